/*
 * mmpool._core's tickets: TicketBase, the C half of mmpool.Ticket, a place in
 * line from Pool.enqueue (or acquire_async's first step) over the library's
 * ticket calls (mmpool_ticket_wait, _wait_or_leave, _cancel).
 *
 * A ticket's Python-side state changes under the GIL only: `cancel()` marks
 * it cancelled before it asks the library, so a wait that the library then
 * answers with INVALID_LEASE (the ticket left the line) knows that a cancel,
 * not a bug, took it, and raises concurrent.futures.CancelledError. Which of
 * a racing wait and cancel wins is the library's decision, made once: the
 * wait gets the lease, or the cancel gives the bytes back.
 */
#include "_core.h"

#include <stdio.h>

PyTypeObject *TicketBase_Type;

enum { TICKET_WAITING = 0, TICKET_REDEEMED = 1, TICKET_CANCELLED = 2, TICKET_GONE = 3 };
static const char *const state_names[] = {"waiting", "redeemed", "cancelled", "gone"};

typedef struct {
    PyObject_HEAD
    PoolObject *pool;     /* keeps the Python pool, so its handle, alive */
    uint64_t id;
    uint64_t nbytes;
    char state;
    char from_acquire;    /* made by acquire_async: errors carry its name */
} TicketObject;

PyObject *new_ticket(PoolObject *pool, mmpool_ticket ticket, uint64_t nbytes, int from_acquire) {
    TicketObject *self = (TicketObject *)pool->ticket_alloc(pool->ticket_type, 0);
    if (self == NULL) {
        mmpool_status ignored;
        CALL(pool, ignored, mmpool_ticket_cancel(pool->pool, ticket));
        (void)ignored;
        return NULL;
    }
    Py_INCREF(pool);
    self->pool = pool;
    self->id = ticket.id;
    self->nbytes = nbytes;
    self->state = TICKET_WAITING;
    self->from_acquire = (char)from_acquire;
    return (PyObject *)self;
}

/* Leaves the line, or gives back a grant not collected. */
static void leave_line(TicketObject *self) {
    mmpool_status ignored;
    mmpool_ticket ticket = {self->id};
    CALL(self->pool, ignored, mmpool_ticket_cancel(self->pool->pool, ticket));
    (void)ignored;
}

/* The outcome of a library wait on this ticket, as Python sees it: the
 * lease; None for a TIMEOUT when `none_on_timeout`; an exception otherwise
 * (CancelledError when cancel() took the ticket). */
static PyObject *outcome(TicketObject *self, mmpool_status status, mmpool_lease grant, int keeps_place,
                         int none_on_timeout, const char *operation) {
    if (status == MMPOOL_OK) {
        self->state = TICKET_REDEEMED;
        return new_lease(self->pool, grant);
    }
    if (self->state == TICKET_CANCELLED) {
        char text[160];
        snprintf(text, sizeof text, "%s.%s: the ticket for %llu bytes (id %#llx) was cancelled",
                 self->from_acquire ? "Pool" : "Ticket", self->from_acquire ? "acquire_async" : operation,
                 (unsigned long long)self->nbytes, (unsigned long long)self->id);
        PyErr_SetString(cancelled_error, text);
        return NULL;
    }
    if (!(status == MMPOOL_ERR_TIMEOUT && keeps_place) && self->state == TICKET_WAITING) self->state = TICKET_GONE;
    if (status == MMPOOL_ERR_TIMEOUT && none_on_timeout) Py_RETURN_NONE;
    if (self->from_acquire) return raise_status(status, (PyObject *)self->pool, "acquire_async", self->nbytes);
    return raise_status(status, (PyObject *)self, operation, self->nbytes);
}

static PyObject *TicketBase_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    (void)type;
    (void)args;
    (void)kwds;
    return PyErr_Format(PyExc_TypeError, "tickets are made by Pool.enqueue");
}

/* A ticket dropped while still in line leaves it (a grant not collected goes
 * back) and says so with a ResourceWarning, as a dropped lease does. */
static void TicketBase_finalize(PyObject *obj) {
    TicketObject *self = (TicketObject *)obj;
    if (self->state != TICKET_WAITING || self->pool == NULL) return;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    self->state = TICKET_CANCELLED;
    leave_line(self);
    char text[200];
    snprintf(text, sizeof text,
             "unredeemed ticket for %llu bytes (id %#llx) was garbage-collected; it left the line. "
             "Redeem it with wait() or await, or leave with cancel()",
             (unsigned long long)self->nbytes, (unsigned long long)self->id);
    if (PyErr_ResourceWarning(obj, 1, "%s", text) < 0) PyErr_WriteUnraisable(obj);
    PyErr_Restore(type, value, traceback);
}

static void TicketBase_dealloc(PyObject *obj) {
    TicketObject *self = (TicketObject *)obj;
    PyTypeObject *type = Py_TYPE(obj);
    if (self->state == TICKET_WAITING && self->pool != NULL) leave_line(self);
    Py_CLEAR(self->pool);
    freefunc free_fn = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_fn(obj);
    Py_DECREF(type);
}

static PyObject *TicketBase_wait(PyObject *obj, PyObject *args, PyObject *kwds) {
    static char *keywords[] = {"timeout", NULL};
    TicketObject *self = (TicketObject *)obj;
    PyObject *timeout = Py_None;
    uint64_t wait_ns;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:wait", keywords, &timeout) || timeout_arg(timeout, &wait_ns) < 0) {
        return NULL;
    }
    mmpool_ticket ticket = {self->id};
    mmpool_status status;
    mmpool_lease grant = {0, 0};
    if (sliced_wait(self->pool, ticket, wait_ns, 0, &status, &grant) < 0) return NULL; /* keeps its place */
    return outcome(self, status, grant, 1, 0, "wait");
}

static PyObject *TicketBase_cancel(PyObject *obj, PyObject *unused) {
    (void)unused;
    TicketObject *self = (TicketObject *)obj;
    if (self->state == TICKET_WAITING) {
        self->state = TICKET_CANCELLED;
        leave_line(self);
    }
    Py_RETURN_NONE;
}

/* A zero wait on the ticket: mmpool_ticket_wait, or with `leave`
 * mmpool_ticket_wait_or_leave. The lease, None for TIMEOUT (still in line;
 * with `leave`, gone, or not if a shared pool's lock was busy: the state
 * stays "waiting" for the caller's cancel() to make certain), or the
 * exception of the ticket's fate. */
static PyObject *zero_wait(TicketObject *self, int leave) {
    mmpool_ticket ticket = {self->id};
    mmpool_lease grant = {0, 0};
    mmpool_status status;
    if (leave) {
        CALL(self->pool, status, mmpool_ticket_wait_or_leave(self->pool->pool, ticket, 0, &grant));
    } else {
        CALL(self->pool, status, mmpool_ticket_wait(self->pool->pool, ticket, 0, &grant));
    }
    return outcome(self, status, grant, 1, 1, "wait");
}

/* Collects a decided ticket without waiting. */
static PyObject *TicketBase_collect(PyObject *obj, PyObject *unused) {
    (void)unused;
    return zero_wait((TicketObject *)obj, 0);
}

/* A wait's time ran out: leaves the line, counting a timeout, unless the
 * grant came first (then the lease). */
static PyObject *TicketBase_leave(PyObject *obj, PyObject *unused) {
    (void)unused;
    return zero_wait((TicketObject *)obj, 1);
}

/* Registers the ticket with a Notifier: its fate becomes one event there.
 * True when registered; False when a shared pool's lock was kept busy (not
 * registered, the ticket keeps its place: try again). */
static PyObject *TicketBase_notify(PyObject *obj, PyObject *args) {
    TicketObject *self = (TicketObject *)obj;
    PyObject *notifier;
    unsigned long long user;
    if (!PyArg_ParseTuple(args, "OK:_notify", &notifier, &user)) return NULL;
    mmpool_ticket ticket = {self->id};
    mmpool_status status;
    if (notify_ticket(self->pool, ticket, notifier, (uint64_t)user, &status) < 0) return NULL;
    if (status == MMPOOL_ERR_TIMEOUT) Py_RETURN_FALSE; /* a shared pool's lock was kept busy: try again */
    if (status != MMPOOL_OK) {
        if (self->state == TICKET_CANCELLED) return outcome(self, status, (mmpool_lease){0, 0}, 1, 0, "wait");
        if (self->from_acquire) return raise_status(status, (PyObject *)self->pool, "acquire_async", self->nbytes);
        return raise_status(status, obj, "__await__", self->nbytes);
    }
    Py_RETURN_TRUE;
}

static PyObject *TicketBase_get_id(PyObject *obj, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(((TicketObject *)obj)->id);
}

static PyObject *TicketBase_get_nbytes(PyObject *obj, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(((TicketObject *)obj)->nbytes);
}

static PyObject *TicketBase_get_pool(PyObject *obj, void *closure) {
    (void)closure;
    PyObject *pool = (PyObject *)((TicketObject *)obj)->pool;
    Py_INCREF(pool);
    return pool;
}

static PyObject *TicketBase_get_state(PyObject *obj, void *closure) {
    (void)closure;
    return PyUnicode_FromString(state_names[(int)((TicketObject *)obj)->state]);
}

static PyMethodDef TicketBase_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))TicketBase_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(timeout=None) -> Lease\n--\n\n"
     "Waits for the ticket's grant up to timeout seconds (None: as long as it\n"
     "takes), with the GIL released; Ctrl-C interrupts it. The ticket keeps its\n"
     "place in line when the wait times out (TimeoutError) or is interrupted:\n"
     "wait again, or cancel().\n\n"
     "Raises concurrent.futures.CancelledError when cancel() took the ticket,\n"
     "also from another thread while this one waits; PoolClosedError; ValueError\n"
     "(the total was lowered below the request, or the ticket was already\n"
     "redeemed)."},
    {"cancel", TicketBase_cancel, METH_NOARGS,
     "cancel()\n--\n\n"
     "Leaves the line; a grant not yet collected goes back to the pool. Safe from\n"
     "any thread: a wait() in another thread raises CancelledError, an `await`\n"
     "of the ticket raises asyncio.CancelledError. After a redemption (or a wait\n"
     "that won the race against this call) it does nothing: the lease is then\n"
     "the waiter's to release. Idempotent."},
    {"_collect", TicketBase_collect, METH_NOARGS,
     "_collect() -> Lease | None: the grant of a decided ticket without waiting; None while in line."},
    {"_notify", TicketBase_notify, METH_VARARGS,
     "_notify(notifier, user) -> bool: its fate becomes one event (ticket id, user, status) on the\n"
     "Notifier; False: not registered, as a shared pool's lock was kept busy (try again)."},
    {"_leave", TicketBase_leave, METH_NOARGS,
     "_leave() -> Lease | None: leaves the line counting a timeout (None; then cancel() to be\n"
     "certain), unless already granted."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef TicketBase_getset[] = {
    {"id", TicketBase_get_id, NULL, "The ticket's id (its lease gets the same id).", NULL},
    {"nbytes", TicketBase_get_nbytes, NULL, "The bytes it waits for.", NULL},
    {"pool", TicketBase_get_pool, NULL, "The pool whose line it is in.", NULL},
    {"state", TicketBase_get_state, NULL,
     "'waiting' (in line, or granted and not yet collected), 'redeemed' (a wait\n"
     "returned its lease), 'cancelled', or 'gone' (it left the line: pool closed,\n"
     "total lowered below it, timed out).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot TicketBase_slots[] = {
    {Py_tp_new, TicketBase_new},
    {Py_tp_dealloc, TicketBase_dealloc},
    {Py_tp_finalize, TicketBase_finalize},
    {Py_tp_methods, TicketBase_methods},
    {Py_tp_getset, TicketBase_getset},
    {Py_tp_doc, "The C half of mmpool.Ticket."},
    {0, NULL},
};

static PyType_Spec TicketBase_spec = {
    "mmpool._core.TicketBase", sizeof(TicketObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, TicketBase_slots,
};

int ticket_types_init(PyObject *module) {
    TicketBase_Type = (PyTypeObject *)PyType_FromSpec(&TicketBase_spec);
    if (TicketBase_Type == NULL || PyModule_AddObject(module, "TicketBase", (PyObject *)TicketBase_Type) < 0) {
        return -1;
    }
    Py_INCREF(TicketBase_Type); /* the module's reference was stolen; keep ours */
    return 0;
}
