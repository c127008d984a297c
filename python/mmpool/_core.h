/*
 * What the C files of mmpool._core share: the object layouts of pools and
 * leases, the GIL rule for non-waiting calls, the error and argument helpers
 * (defined in _core.c) and the entry points of the tickets (_ticket.c) and
 * the notifier (_notify.c).
 * Everything here is internal to the module (built with -fvisibility=hidden).
 */
#ifndef MMPOOL_CORE_H
#define MMPOOL_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <mmpool.h>

typedef struct {
    PyObject_HEAD
    mmpool *pool;         /* one reference, dropped in dealloc */
    PyTypeObject *lease_type;
    allocfunc lease_alloc;
    PyTypeObject *ticket_type;
    allocfunc ticket_alloc;
    int keep_gil;
} PoolObject;

typedef struct {
    PyObject_HEAD
    PoolObject *pool;     /* keeps the Python pool, so its handle, alive */
    uint64_t id;
    uint64_t nbytes;
    char released;
    char detached;
} LeaseObject;

/* Runs a non-waiting library call, releasing the GIL around it unless the
 * pool allows keeping it. */
#define CALL(self, status, expr)                 \
    do {                                         \
        if ((self)->keep_gil) {                  \
            (status) = (expr);                   \
        } else {                                 \
            Py_BEGIN_ALLOW_THREADS               \
            (status) = (expr);                   \
            Py_END_ALLOW_THREADS                 \
        }                                        \
    } while (0)

extern PyTypeObject *LeaseBase_Type;
extern PyTypeObject *TicketBase_Type;
extern PyTypeObject *Notifier_Type;
/* concurrent.futures.CancelledError: what a wait on a cancelled ticket raises. */
extern PyObject *cancelled_error;

/* Sets the Python exception for a failing status, with this thread's library
 * message; always returns NULL. */
PyObject *raise_status(mmpool_status status, PyObject *obj, const char *operation, uint64_t nbytes);
/* A byte count; -1 with an exception set when refused. */
int as_u64(PyObject *value, const char *name, uint64_t *out);
/* A timeout in seconds (None: forever) as nanoseconds. */
int timeout_arg(PyObject *value, uint64_t *out);
/* The pool object, or NULL with an exception if it has no handle. */
PoolObject *as_pool(PyObject *obj);
/* A lease object for a grant; on failure the grant goes back. */
PyObject *new_lease(PoolObject *pool, mmpool_lease grant);

/* Waits for a ticket in slices with the GIL released, running signal
 * handlers between slices. `leave`: the last slice leaves the line when it
 * runs out (and counts a timeout), as acquire does; otherwise the ticket
 * keeps its place. Returns 0 with the library's outcome in *status (and the
 * grant in *grant on OK), or -1 when a signal handler raised (the ticket is
 * still in line, or granted and not collected: the caller decides). */
int sliced_wait(PoolObject *pool, mmpool_ticket ticket, uint64_t wait_ns, int leave, mmpool_status *status,
                mmpool_lease *grant);

/* A ticket object of the pool's ticket class for a place in line; on
 * failure the ticket leaves the line. `from_acquire`: made by
 * acquire_async, whose name its errors carry. */
PyObject *new_ticket(PoolObject *pool, mmpool_ticket ticket, uint64_t nbytes, int from_acquire);
/* Creates TicketBase and adds it to the module; -1 on error. */
int ticket_types_init(PyObject *module);

/* Registers `ticket` of `pool` with the mmpool._core.Notifier `notifier`
 * under `user` (_notify.c). Returns 0 with the library's status in *status,
 * or -1 with a TypeError when `notifier` is no Notifier. */
int notify_ticket(PoolObject *pool, mmpool_ticket ticket, PyObject *notifier, uint64_t user, mmpool_status *status);
/* Creates Notifier and adds it to the module; -1 on error. */
int notifier_type_init(PyObject *module);

#endif
