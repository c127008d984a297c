/*
 * mmpool._core: the hot path of the Python package, a CPython extension on
 * the limited API (abi3, CPython 3.9 and later) calling the C ABI of the very
 * libmmpool the package ships (linked with an $ORIGIN-relative rpath, and
 * loaded after ctypes mapped that file, so there is one copy of the library
 * and one global pool in the process).
 *
 * It implements acquiring, trying, releasing and resizing leases (here),
 * tickets (_ticket.c) and the notifier an event loop watches (_notify.c),
 * with what they share in _core.h; the rest of
 * the package (pool creation, figures, the global pool, logging) calls the
 * rarely used functions through ctypes. Each operation has this one
 * implementation.
 *
 * The GIL: calls that never wait keep it on an in-process pool (no code of
 * the library calls back into Python while holding a lock of such a pool).
 * On a shared pool every call takes the segment's lock, and a thread holding
 * it may log through the Python callback, so every call releases the GIL.
 * Waits always release it, in slices of WAIT_SLICE_NS, between which signal
 * handlers run: Ctrl-C interrupts a wait and the ticket is cancelled (its
 * grant, if one raced the signal, goes back).
 */
#include "_core.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static uint64_t wait_slice_ns = 50000000; /* 50 ms */

/* mmpool._lib.exception_for(status, message, obj, operation, nbytes): the
 * exception to raise, built in Python, where status codes become exception
 * types. */
static PyObject *exception_for;
/* mmpool._lib.as_u64 and mmpool._lib.timeout_ns: argument checks with their
 * messages, for values other than plain ints and floats. */
static PyObject *py_as_u64;
static PyObject *py_timeout_ns;
PyObject *cancelled_error;

static PyTypeObject *PoolBase_Type;
PyTypeObject *LeaseBase_Type;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sets the Python exception for a failing status, with this thread's library
 * message; always returns NULL. */
PyObject *raise_status(mmpool_status status, PyObject *obj, const char *operation, uint64_t nbytes) {
    const char *message = mmpool_last_error();
    PyObject *exc = PyObject_CallFunction(exception_for, "iyOsK", (int)status, message ? message : "", obj, operation,
                                          (unsigned long long)nbytes);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* A byte count: plain ints here, anything else (and every refusal, for its
 * message) through mmpool._lib.as_u64. */
int as_u64(PyObject *value, const char *name, uint64_t *out) {
    if (PyLong_CheckExact(value)) {
        unsigned long long n = PyLong_AsUnsignedLongLong(value);
        if (!(n == (unsigned long long)-1 && PyErr_Occurred())) {
            *out = n;
            return 0;
        }
        PyErr_Clear();
    }
    PyObject *checked = PyObject_CallFunction(py_as_u64, "Os", value, name);
    if (checked == NULL) return -1;
    *out = PyLong_AsUnsignedLongLong(checked);
    Py_DECREF(checked);
    return PyErr_Occurred() ? -1 : 0;
}

/* A timeout in seconds (None: forever) as nanoseconds. */
int timeout_arg(PyObject *value, uint64_t *out) {
    if (value == Py_None) {
        *out = MMPOOL_WAIT_FOREVER;
        return 0;
    }
    if (PyFloat_CheckExact(value) || PyLong_CheckExact(value)) {
        double seconds = PyFloat_AsDouble(value);
        if (!(seconds == -1.0 && PyErr_Occurred()) && seconds >= 0 && seconds < 1.8e10) {
            *out = (uint64_t)(seconds * 1e9);
            return 0;
        }
        PyErr_Clear();
    }
    PyObject *ns = PyObject_CallFunctionObjArgs(py_timeout_ns, value, NULL);
    if (ns == NULL) return -1;
    *out = PyLong_AsUnsignedLongLong(ns);
    Py_DECREF(ns);
    return PyErr_Occurred() ? -1 : 0;
}

PoolObject *as_pool(PyObject *obj) {
    PoolObject *self = (PoolObject *)obj;
    if (self->pool == NULL) {
        PyErr_SetString(PyExc_ValueError, "the pool has no handle (it was never created)");
        return NULL;
    }
    return self;
}

/* A lease object for a grant; on failure the grant goes back. */
PyObject *new_lease(PoolObject *pool, mmpool_lease grant) {
    LeaseObject *lease = (LeaseObject *)pool->lease_alloc(pool->lease_type, 0);
    if (lease == NULL) {
        mmpool_status ignored;
        CALL(pool, ignored, mmpool_release(pool->pool, grant));
        (void)ignored;
        return NULL;
    }
    Py_INCREF(pool);
    lease->pool = pool;
    lease->id = grant.id;
    lease->nbytes = grant.nbytes;
    return (PyObject *)lease;
}

/* ---- PoolBase ----------------------------------------------------------- */

static PyObject *PoolBase_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    (void)args;
    (void)kwds;
    PyObject *lease_type = PyObject_GetAttrString((PyObject *)type, "_lease_class");
    if (lease_type == NULL) return NULL;
    if (!PyType_Check(lease_type) || !PyType_IsSubtype((PyTypeObject *)lease_type, LeaseBase_Type) ||
        (PyType_GetFlags((PyTypeObject *)lease_type) & Py_TPFLAGS_HEAPTYPE) == 0) {
        Py_DECREF(lease_type);
        return PyErr_Format(PyExc_TypeError, "_lease_class must be a subclass of mmpool.Lease");
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    PoolObject *self = (PoolObject *)alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(lease_type);
        return NULL;
    }
    self->lease_type = (PyTypeObject *)lease_type;
    self->lease_alloc = (allocfunc)PyType_GetSlot(self->lease_type, Py_tp_alloc);
    PyObject *ticket_type = PyObject_GetAttrString((PyObject *)type, "_ticket_class");
    if (ticket_type == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    if (!PyType_Check(ticket_type) || !PyType_IsSubtype((PyTypeObject *)ticket_type, TicketBase_Type) ||
        (PyType_GetFlags((PyTypeObject *)ticket_type) & Py_TPFLAGS_HEAPTYPE) == 0) {
        Py_DECREF(ticket_type);
        Py_DECREF(self);
        return PyErr_Format(PyExc_TypeError, "_ticket_class must be a subclass of mmpool.Ticket");
    }
    self->ticket_type = (PyTypeObject *)ticket_type;
    self->ticket_alloc = (allocfunc)PyType_GetSlot(self->ticket_type, Py_tp_alloc);
    return (PyObject *)self;
}

static void PoolBase_dealloc(PyObject *obj) {
    PoolObject *self = (PoolObject *)obj;
    PyTypeObject *type = Py_TYPE(obj);
    if (self->pool != NULL) {
        mmpool *pool = self->pool;
        self->pool = NULL;
        Py_BEGIN_ALLOW_THREADS
        mmpool_unref(pool);
        Py_END_ALLOW_THREADS
    }
    Py_CLEAR(self->lease_type);
    Py_CLEAR(self->ticket_type);
    freefunc free_fn = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_fn(obj);
    Py_DECREF(type);
}

static PyObject *PoolBase_own(PyObject *obj, PyObject *args) {
    PoolObject *self = (PoolObject *)obj;
    PyObject *address;
    int keep_gil;
    if (!PyArg_ParseTuple(args, "Op:_own", &address, &keep_gil)) return NULL;
    void *handle = PyLong_AsVoidPtr(address);
    if (handle == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "a pool handle must not be NULL");
        return NULL;
    }
    if (self->pool != NULL) {
        PyErr_SetString(PyExc_ValueError, "this pool object already owns a handle");
        return NULL;
    }
    self->pool = (mmpool *)handle;
    self->keep_gil = keep_gil;
    Py_RETURN_NONE;
}

static PyObject *PoolBase_get_handle(PyObject *obj, void *closure) {
    (void)closure;
    PoolObject *self = (PoolObject *)obj;
    return self->pool ? PyLong_FromVoidPtr(self->pool) : PyLong_FromLong(0);
}

int sliced_wait(PoolObject *self, mmpool_ticket ticket, uint64_t wait_ns, int leave, mmpool_status *status,
                mmpool_lease *grant) {
    uint64_t deadline = 0;
    if (wait_ns != MMPOOL_WAIT_FOREVER) {
        uint64_t now = now_ns();
        deadline = wait_ns > UINT64_MAX - now ? UINT64_MAX - 1 : now + wait_ns;
    }
    for (;;) {
        uint64_t slice = wait_slice_ns;
        int last = 0;
        if (wait_ns != MMPOOL_WAIT_FOREVER) {
            uint64_t now = now_ns();
            uint64_t left = deadline > now ? deadline - now : 0;
            if (left <= slice) {
                slice = left;
                last = 1;
            }
        }
        mmpool_lease got = {0, 0};
        mmpool_status outcome;
        Py_BEGIN_ALLOW_THREADS
        outcome = last && leave ? mmpool_ticket_wait_or_leave(self->pool, ticket, slice, &got)
                                : mmpool_ticket_wait(self->pool, ticket, slice, &got);
        Py_END_ALLOW_THREADS
        if (outcome != MMPOOL_ERR_TIMEOUT || last) {
            *status = outcome;
            if (outcome == MMPOOL_OK) *grant = got;
            return 0;
        }
        if (PyErr_CheckSignals() < 0) return -1;
    }
}

/* Waits in line for a ticket in slices; on any exception leaves the line. */
static PyObject *wait_in_line(PoolObject *self, mmpool_ticket ticket, uint64_t nbytes, uint64_t wait_ns) {
    mmpool_status status;
    mmpool_lease grant = {0, 0};
    if (sliced_wait(self, ticket, wait_ns, 1, &status, &grant) < 0) {
        mmpool_status ignored;
        CALL(self, ignored, mmpool_ticket_cancel(self->pool, ticket)); /* a grant not collected goes back */
        (void)ignored;
        return NULL;
    }
    if (status == MMPOOL_OK) return new_lease(self, grant);
    return raise_status(status, (PyObject *)self, "acquire", nbytes); /* the ticket has left the line */
}

static PyObject *acquire(PyObject *obj, PyObject *nbytes_arg, PyObject *timeout) {
    PoolObject *self = as_pool(obj);
    uint64_t nbytes, wait_ns;
    if (self == NULL || as_u64(nbytes_arg, "nbytes", &nbytes) < 0 || timeout_arg(timeout, &wait_ns) < 0) return NULL;
    mmpool_lease grant;
    mmpool_ticket ticket;
    mmpool_status status;
    CALL(self, status, mmpool_acquire_or_enqueue(self->pool, nbytes, &grant, &ticket));
    if (status != MMPOOL_OK) return raise_status(status, obj, "acquire", nbytes);
    if (grant.id != 0) return new_lease(self, grant);
    return wait_in_line(self, ticket, nbytes, wait_ns);
}

static PyObject *PoolBase_acquire(PyObject *obj, PyObject *args, PyObject *kwds) {
    static char *keywords[] = {"nbytes", "timeout", NULL};
    PyObject *nbytes_arg = NULL, *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:acquire", keywords, &nbytes_arg, &timeout)) return NULL;
    return acquire(obj, nbytes_arg, timeout);
}

/* The vectorcall form (METH_FASTCALL | METH_KEYWORDS, part of the stable ABI
 * from CPython 3.10, where the module init chooses it): positional calls
 * skip building a tuple; keywords take the general path. */
#ifndef METH_FASTCALL
#define METH_FASTCALL 0x0080
#endif

static PyObject *PoolBase_acquire_fast(PyObject *obj, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    if (kwnames == NULL && (nargs == 1 || nargs == 2)) return acquire(obj, args[0], nargs == 2 ? args[1] : Py_None);
    PyObject *tuple = PyTuple_New(nargs), *kwds = NULL, *result = NULL;
    if (tuple == NULL) return NULL;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SetItem(tuple, i, args[i]);
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_Size(kwnames);
    if (nkw > 0 && (kwds = PyDict_New()) == NULL) goto done;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        if (PyDict_SetItem(kwds, PyTuple_GetItem(kwnames, i), args[nargs + i]) < 0) goto done;
    }
    result = PoolBase_acquire(obj, tuple, kwds);
done:
    Py_DECREF(tuple);
    Py_XDECREF(kwds);
    return result;
}

/* The pool and a byte count argument of a one-argument method; NULL with an
 * exception when either is refused. */
static PoolObject *pool_and_nbytes(PyObject *obj, PyObject *nbytes_arg, uint64_t *nbytes) {
    PoolObject *self = as_pool(obj);
    return self == NULL || as_u64(nbytes_arg, "nbytes", nbytes) < 0 ? NULL : self;
}

static PyObject *PoolBase_try_acquire(PyObject *obj, PyObject *nbytes_arg) {
    uint64_t nbytes;
    PoolObject *self = pool_and_nbytes(obj, nbytes_arg, &nbytes);
    if (self == NULL) return NULL;
    mmpool_lease grant;
    mmpool_status status;
    CALL(self, status, mmpool_try_acquire(self->pool, nbytes, &grant));
    if (status == MMPOOL_OK) return new_lease(self, grant);
    if (status == MMPOOL_ERR_WOULD_BLOCK) Py_RETURN_NONE;
    return raise_status(status, obj, "try_acquire", nbytes);
}

static PyObject *PoolBase_enqueue(PyObject *obj, PyObject *nbytes_arg) {
    uint64_t nbytes;
    PoolObject *self = pool_and_nbytes(obj, nbytes_arg, &nbytes);
    if (self == NULL) return NULL;
    mmpool_ticket ticket;
    mmpool_status status;
    CALL(self, status, mmpool_enqueue(self->pool, nbytes, &ticket));
    if (status != MMPOOL_OK) return raise_status(status, obj, "enqueue", nbytes);
    return new_ticket(self, ticket, nbytes, 0);
}

/* acquire_async's first step: a lease at once when the bytes are free and
 * nobody waits (no trip through the event loop), else a ticket in line. */
static PyObject *PoolBase_acquire_or_enqueue(PyObject *obj, PyObject *nbytes_arg) {
    uint64_t nbytes;
    PoolObject *self = pool_and_nbytes(obj, nbytes_arg, &nbytes);
    if (self == NULL) return NULL;
    mmpool_lease grant;
    mmpool_ticket ticket;
    mmpool_status status;
    CALL(self, status, mmpool_acquire_or_enqueue(self->pool, nbytes, &grant, &ticket));
    if (status != MMPOOL_OK) return raise_status(status, obj, "acquire_async", nbytes);
    if (grant.id != 0) return new_lease(self, grant);
    return new_ticket(self, ticket, nbytes, 1);
}

static PyMethodDef PoolBase_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))PoolBase_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire(nbytes, timeout=None) -> Lease\n--\n\n"
     "Acquires nbytes, waiting in line (first come, first served) up to timeout\n"
     "seconds (None: as long as it takes; 0: only if grantable at once). The GIL\n"
     "is released while waiting, and Ctrl-C interrupts the wait without losing\n"
     "bytes.\n\n"
     "Raises ValueError (negative, or more than the pool's total: it could never\n"
     "be granted), TimeoutError (nothing was reserved), PoolClosedError."},
    {"try_acquire", PoolBase_try_acquire, METH_O,
     "try_acquire(nbytes) -> Lease | None\n--\n\n"
     "Acquires nbytes only if that is possible at once without jumping the line;\n"
     "None otherwise. Raises ValueError (negative, above the total) and\n"
     "PoolClosedError."},
    {"enqueue", PoolBase_enqueue, METH_O,
     "enqueue(nbytes) -> Ticket\n--\n\n"
     "Joins the line for nbytes and returns at once with a Ticket: redeem it with\n"
     "ticket.wait() in a thread or `await ticket` in an event loop, or leave the\n"
     "line with ticket.cancel(). Raises ValueError (negative, above the total) and\n"
     "PoolClosedError."},
    {"_acquire_or_enqueue", PoolBase_acquire_or_enqueue, METH_O,
     "_acquire_or_enqueue(nbytes) -> Lease | Ticket: a lease at once if the bytes are free and\n"
     "nobody waits, else a ticket in line (acquire_async's first step)."},
    {"_own", PoolBase_own, METH_VARARGS,
     "_own(address, keep_gil): takes over one reference of the handle at address."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef PoolBase_getset[] = {
    {"handle", PoolBase_get_handle, NULL,
     "The mmpool * as an integer, for C code: a borrowed reference, valid while\n"
     "this object lives (mmpool_ref it to keep it longer).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot PoolBase_slots[] = {
    {Py_tp_new, PoolBase_new},
    {Py_tp_dealloc, PoolBase_dealloc},
    {Py_tp_methods, PoolBase_methods},
    {Py_tp_getset, PoolBase_getset},
    {Py_tp_doc, "The C half of mmpool.Pool: the handle and the acquire calls."},
    {0, NULL},
};

static PyType_Spec PoolBase_spec = {
    "mmpool._core.PoolBase", sizeof(PoolObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, PoolBase_slots,
};

/* ---- LeaseBase ---------------------------------------------------------- */

static PyObject *LeaseBase_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    (void)type;
    (void)args;
    (void)kwds;
    return PyErr_Format(PyExc_TypeError, "leases are made by Pool.acquire and Pool.try_acquire");
}

/* Returns the bytes of a lease still held. */
static mmpool_status give_back(LeaseObject *self) {
    mmpool_status status;
    mmpool_lease lease = {self->id, self->nbytes};
    CALL(self->pool, status, mmpool_release(self->pool->pool, lease));
    if (status == MMPOOL_OK) self->released = 1;
    return status;
}

/* Called before the lease is freed (PEP 442): a lease dropped while it still
 * holds bytes gives them back and says so with a ResourceWarning whose source
 * is the lease, so that under tracemalloc the warning shows where it was
 * acquired. */
static void LeaseBase_finalize(PyObject *obj) {
    LeaseObject *self = (LeaseObject *)obj;
    if (self->released || self->detached || self->pool == NULL) return;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    if (give_back(self) == MMPOOL_OK) {
        char text[200];
        snprintf(text, sizeof text,
                 "unreleased lease of %llu bytes (id %#llx) was garbage-collected; its bytes went back to the pool. "
                 "Release it with `with` or .release(), or keep the bytes on purpose with .detach()",
                 (unsigned long long)self->nbytes, (unsigned long long)self->id);
        if (PyErr_ResourceWarning(obj, 1, "%s", text) < 0) PyErr_WriteUnraisable(obj);
    }
    PyErr_Restore(type, value, traceback);
}

static void LeaseBase_dealloc(PyObject *obj) {
    LeaseObject *self = (LeaseObject *)obj;
    PyTypeObject *type = Py_TYPE(obj);
    if (!self->released && !self->detached && self->pool != NULL) (void)give_back(self);
    Py_CLEAR(self->pool);
    freefunc free_fn = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_fn(obj);
    Py_DECREF(type);
}

static PyObject *LeaseBase_release(PyObject *obj, PyObject *unused) {
    (void)unused;
    LeaseObject *self = (LeaseObject *)obj;
    if (self->released || self->detached) Py_RETURN_NONE;
    mmpool_status status = give_back(self);
    if (status != MMPOOL_OK) return raise_status(status, obj, "release", self->nbytes);
    Py_RETURN_NONE;
}

static PyObject *LeaseBase_enter(PyObject *obj, PyObject *unused) {
    (void)unused;
    Py_INCREF(obj);
    return obj;
}

static PyObject *LeaseBase_exit(PyObject *obj, PyObject *args) {
    (void)args;
    return LeaseBase_release(obj, NULL);
}

static PyObject *LeaseBase_exit_fast(PyObject *obj, PyObject *const *args, Py_ssize_t nargs) {
    (void)args;
    (void)nargs;
    return LeaseBase_release(obj, NULL);
}

static PyObject *LeaseBase_detach(PyObject *obj, PyObject *unused) {
    (void)unused;
    LeaseObject *self = (LeaseObject *)obj;
    if (self->released) {
        PyErr_SetString(PyExc_ValueError, "Lease.detach: the lease was already released; it holds no bytes to hand over");
        return NULL;
    }
    self->detached = 1;
    return PyLong_FromUnsignedLongLong(self->id);
}

static PyObject *LeaseBase_resize(PyObject *obj, PyObject *args, PyObject *kwds) {
    static char *keywords[] = {"nbytes", "timeout", NULL};
    LeaseObject *self = (LeaseObject *)obj;
    PyObject *nbytes_arg, *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:resize", keywords, &nbytes_arg, &timeout)) return NULL;
    uint64_t nbytes, wait_ns;
    if (as_u64(nbytes_arg, "nbytes", &nbytes) < 0 || timeout_arg(timeout, &wait_ns) < 0) return NULL;
    if (self->detached) {
        PyErr_SetString(PyExc_ValueError, "Lease.resize: the lease was detached; its new owner resizes it");
        return NULL;
    }
    mmpool_lease lease = {self->id, self->nbytes};
    mmpool_status status;
    Py_BEGIN_ALLOW_THREADS /* growing may wait */
    status = mmpool_lease_resize(self->pool->pool, &lease, nbytes, wait_ns);
    Py_END_ALLOW_THREADS
    if (status != MMPOOL_OK) return raise_status(status, obj, "resize", nbytes);
    self->nbytes = lease.nbytes;
    Py_RETURN_NONE;
}

/* Split and merge move bytes between leases of one pool without freeing them;
 * a lease released or detached takes no part. */
static int holds_bytes(LeaseObject *self, const char *operation) {
    if (self->released || self->detached) {
        PyErr_Format(PyExc_ValueError, "Lease.%s: the lease was %s", operation,
                     self->detached ? "detached; its new owner holds the bytes" : "already released");
        return -1;
    }
    return 0;
}

static PyObject *LeaseBase_split(PyObject *obj, PyObject *nbytes_arg) {
    LeaseObject *self = (LeaseObject *)obj;
    uint64_t nbytes;
    if (as_u64(nbytes_arg, "nbytes", &nbytes) < 0 || holds_bytes(self, "split") < 0) return NULL;
    mmpool_lease lease = {self->id, self->nbytes}, part = {0, 0};
    mmpool_status status;
    CALL(self->pool, status, mmpool_lease_split(self->pool->pool, &lease, nbytes, &part));
    if (status != MMPOOL_OK) return raise_status(status, obj, "split", nbytes);
    self->nbytes = lease.nbytes;
    return new_lease(self->pool, part);
}

static PyObject *LeaseBase_merge(PyObject *obj, PyObject *other_arg) {
    LeaseObject *self = (LeaseObject *)obj;
    if (!PyObject_TypeCheck(other_arg, LeaseBase_Type)) {
        return PyErr_Format(PyExc_TypeError, "Lease.merge: expected a Lease, got %R", (PyObject *)Py_TYPE(other_arg));
    }
    LeaseObject *other = (LeaseObject *)other_arg;
    if (holds_bytes(self, "merge") < 0 || holds_bytes(other, "merge") < 0) return NULL;
    mmpool_lease into = {self->id, self->nbytes}, from = {other->id, other->nbytes};
    mmpool_status status;
    CALL(self->pool, status, mmpool_lease_merge(self->pool->pool, &into, from));
    if (status != MMPOOL_OK) return raise_status(status, obj, "merge", other->nbytes);
    self->nbytes = into.nbytes;
    other->released = 1; /* its bytes are this lease's now */
    Py_RETURN_NONE;
}

static PyObject *LeaseBase_get_id(PyObject *obj, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(((LeaseObject *)obj)->id);
}

static PyObject *LeaseBase_get_nbytes(PyObject *obj, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(((LeaseObject *)obj)->nbytes);
}

static PyObject *LeaseBase_get_pool(PyObject *obj, void *closure) {
    (void)closure;
    PyObject *pool = (PyObject *)((LeaseObject *)obj)->pool;
    Py_INCREF(pool);
    return pool;
}

static PyObject *LeaseBase_get_released(PyObject *obj, void *closure) {
    (void)closure;
    return PyBool_FromLong(((LeaseObject *)obj)->released);
}

static PyObject *LeaseBase_get_detached(PyObject *obj, void *closure) {
    (void)closure;
    return PyBool_FromLong(((LeaseObject *)obj)->detached);
}

#define EXIT_METHOD 4 /* the index of __exit__ below */
static PyMethodDef LeaseBase_methods[] = {
    {"release", LeaseBase_release, METH_NOARGS,
     "release()\n--\n\nReturns the bytes to the pool. Releasing again (or after detach) does nothing."},
    {"resize", (PyCFunction)(void (*)(void))LeaseBase_resize, METH_VARARGS | METH_KEYWORDS,
     "resize(nbytes, timeout=None)\n--\n\n"
     "Changes what the lease holds to nbytes. Shrinking returns the difference at\n"
     "once; growing waits in line for it (GIL released) up to timeout seconds\n"
     "(None: no limit).\n\n"
     "Raises ValueError (negative, above the total, or already released),\n"
     "TimeoutError (the lease keeps its old size), PoolClosedError."},
    {"detach", LeaseBase_detach, METH_NOARGS,
     "detach() -> int\n--\n\n"
     "Hands the bytes over to other code (C code that calls mmpool_release on\n"
     "lease.pool.handle with this id) and returns the id: this object then never\n"
     "releases them, neither on release() nor when it is garbage-collected."},
    {"__enter__", LeaseBase_enter, METH_NOARGS, NULL},
    {"__exit__", LeaseBase_exit, METH_VARARGS, NULL},
    {"split", LeaseBase_split, METH_O,
     "split(nbytes) -> Lease\n--\n\n"
     "Moves nbytes of this lease into a new lease of the same pool, atomically\n"
     "(the bytes are never free meanwhile), and returns it; each is released on\n"
     "its own.\n\n"
     "Raises ValueError (0, or not fewer than the lease holds; released or\n"
     "detached)."},
    {"merge", LeaseBase_merge, METH_O,
     "merge(other)\n--\n\n"
     "Moves every byte of other, a lease of the same pool, into this one,\n"
     "atomically; other is released then (holding nothing).\n\n"
     "Raises ValueError (the same lease, another pool's, released or detached)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef LeaseBase_getset[] = {
    {"id", LeaseBase_get_id, NULL, "The lease's id: unique in the process, never reused.", NULL},
    {"nbytes", LeaseBase_get_nbytes, NULL, "The bytes this lease holds (what it held, once released).", NULL},
    {"pool", LeaseBase_get_pool, NULL, "The pool that granted it.", NULL},
    {"released", LeaseBase_get_released, NULL, "Whether the bytes went back to the pool.", NULL},
    {"detached", LeaseBase_get_detached, NULL, "Whether detach() handed the bytes to other code.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot LeaseBase_slots[] = {
    {Py_tp_new, LeaseBase_new},
    {Py_tp_dealloc, LeaseBase_dealloc},
    {Py_tp_finalize, LeaseBase_finalize},
    {Py_tp_methods, LeaseBase_methods},
    {Py_tp_getset, LeaseBase_getset},
    {Py_tp_doc, "The C half of mmpool.Lease."},
    {0, NULL},
};

static PyType_Spec LeaseBase_spec = {
    "mmpool._core.LeaseBase", sizeof(LeaseObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, LeaseBase_slots,
};

/* ---- the module --------------------------------------------------------- */

static PyObject *core_configure(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *exc, *u64, *timeout, *cancelled;
    if (!PyArg_ParseTuple(args, "OOOO:_configure", &exc, &u64, &timeout, &cancelled)) return NULL;
    Py_INCREF(exc);
    Py_INCREF(u64);
    Py_INCREF(timeout);
    Py_INCREF(cancelled);
    Py_XDECREF(exception_for);
    Py_XDECREF(py_as_u64);
    Py_XDECREF(py_timeout_ns);
    Py_XDECREF(cancelled_error);
    exception_for = exc;
    py_as_u64 = u64;
    py_timeout_ns = timeout;
    cancelled_error = cancelled;
    Py_RETURN_NONE;
}

static PyObject *core_set_wait_slice_ns(PyObject *module, PyObject *arg) {
    (void)module;
    unsigned long long ns = PyLong_AsUnsignedLongLong(arg);
    if (ns == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    if (ns == 0) return PyErr_Format(PyExc_ValueError, "the wait slice must be at least 1 ns");
    uint64_t old = wait_slice_ns;
    wait_slice_ns = ns;
    return PyLong_FromUnsignedLongLong(old);
}

static PyObject *core_library_symbol(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    /* The address this module's calls go to: equal to the one ctypes finds in
     * the library it loaded when both use the same copy. */
    return PyLong_FromVoidPtr((void *)&mmpool_version);
}

static PyMethodDef core_methods[] = {
    {"_configure", core_configure, METH_VARARGS,
     "_configure(exception_for, as_u64, timeout_ns, cancelled_error): the Python helpers for errors and\n"
     "argument checks, and the exception of a wait on a cancelled ticket."},
    {"_set_wait_slice_ns", core_set_wait_slice_ns, METH_O,
     "Sets how long one slice of a wait lasts (default 50 ms); returns the old value. For tests."},
    {"_library_symbol", core_library_symbol, METH_NOARGS,
     "The address of mmpool_version as this module resolved it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "mmpool._core", "The compiled hot path of the mmpool package.", -1, core_methods,
    NULL, NULL, NULL, NULL,
};

/* Whether the running interpreter is CPython 3.10 or later. */
static int runtime_has_fastcall(void) {
    int major = 0, minor = 0;
    return sscanf(Py_GetVersion(), "%d.%d", &major, &minor) == 2 && (major > 3 || (major == 3 && minor >= 10));
}

PyMODINIT_FUNC PyInit__core(void) {
    if (runtime_has_fastcall() && strcmp(PoolBase_methods[0].ml_name, "acquire") == 0 &&
        strcmp(LeaseBase_methods[EXIT_METHOD].ml_name, "__exit__") == 0) {
        PoolBase_methods[0].ml_meth = (PyCFunction)(void (*)(void))PoolBase_acquire_fast;
        PoolBase_methods[0].ml_flags = METH_FASTCALL | METH_KEYWORDS;
        LeaseBase_methods[EXIT_METHOD].ml_meth = (PyCFunction)(void (*)(void))LeaseBase_exit_fast;
        LeaseBase_methods[EXIT_METHOD].ml_flags = METH_FASTCALL;
    }
    PyObject *module = PyModule_Create(&core_module);
    if (module == NULL) return NULL;
    LeaseBase_Type = (PyTypeObject *)PyType_FromSpec(&LeaseBase_spec);
    PoolBase_Type = (PyTypeObject *)PyType_FromSpec(&PoolBase_spec);
    if (LeaseBase_Type == NULL || PoolBase_Type == NULL ||
        PyModule_AddObject(module, "LeaseBase", (PyObject *)LeaseBase_Type) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(LeaseBase_Type); /* the module's reference was stolen; keep ours */
    if (PyModule_AddObject(module, "PoolBase", (PyObject *)PoolBase_Type) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(PoolBase_Type);
    if (ticket_types_init(module) < 0 || notifier_type_init(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
