/*
 * mmpool._core's Notifier: one mmpool_notifier (the library's eventfd that
 * turns readable when a ticket registered with it is decided), for one event
 * loop however many tickets wait (mmpool._async makes one per loop), and the
 * ticket's registration with it (TicketBase._notify).
 *
 * Every call here returns at once: the loop thread calls them.
 */
#include "_core.h"

PyTypeObject *Notifier_Type;

typedef struct {
    PyObject_HEAD
    mmpool_notifier *notifier; /* freed in dealloc */
    int fd;
} NotifierObject;

#define MAX_DRAIN 256

static PyObject *Notifier_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (!PyArg_ParseTuple(args, ":Notifier") || (kwds != NULL && PyObject_Length(kwds) > 0)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "Notifier() takes no arguments");
        return NULL;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    NotifierObject *self = (NotifierObject *)alloc(type, 0);
    if (self == NULL) return NULL;
    self->fd = -1;
    mmpool_notifier *notifier = NULL;
    mmpool_status status = mmpool_notifier_new(&notifier);
    if (status == MMPOOL_OK) {
        self->notifier = notifier;
        status = mmpool_notifier_fd(notifier, &self->fd);
    }
    if (status != MMPOOL_OK) {
        raise_status(status, (PyObject *)self, "new", 0);
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void Notifier_dealloc(PyObject *obj) {
    NotifierObject *self = (NotifierObject *)obj;
    PyTypeObject *type = Py_TYPE(obj);
    if (self->notifier != NULL) {
        mmpool_notifier *notifier = self->notifier;
        self->notifier = NULL;
        Py_BEGIN_ALLOW_THREADS
        mmpool_notifier_free(notifier);
        Py_END_ALLOW_THREADS
    }
    freefunc free_fn = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_fn(obj);
    Py_DECREF(type);
}

static PyObject *Notifier_drain(PyObject *obj, PyObject *arg) {
    NotifierObject *self = (NotifierObject *)obj;
    Py_ssize_t capacity = PyLong_AsSsize_t(arg);
    if (capacity == -1 && PyErr_Occurred()) return NULL;
    if (capacity < 1) return PyErr_Format(PyExc_ValueError, "drain: capacity must be at least 1");
    if (capacity > MAX_DRAIN) capacity = MAX_DRAIN;
    mmpool_event events[MAX_DRAIN];
    size_t count = 0;
    mmpool_status status = mmpool_notifier_drain(self->notifier, events, (size_t)capacity, &count);
    if (status != MMPOOL_OK) return raise_status(status, obj, "drain", 0);
    PyObject *list = PyList_New((Py_ssize_t)count);
    if (list == NULL) return NULL;
    for (size_t i = 0; i < count; i++) {
        PyObject *item = Py_BuildValue("(KKi)", (unsigned long long)events[i].ticket.id,
                                       (unsigned long long)events[i].user_data, (int)events[i].status);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SetItem(list, (Py_ssize_t)i, item); /* steals item */
    }
    return list;
}

static PyObject *Notifier_get_fd(PyObject *obj, void *closure) {
    (void)closure;
    return PyLong_FromLong(((NotifierObject *)obj)->fd);
}

static PyMethodDef Notifier_methods[] = {
    {"drain", Notifier_drain, METH_O,
     "drain(capacity) -> list[tuple[int, int, int]]\n--\n\n"
     "Moves up to capacity (at most 256) decided tickets out of the queue, oldest\n"
     "first, as (ticket id, user value, status); never blocks."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Notifier_getset[] = {
    {"fd", Notifier_get_fd, NULL,
     "The file descriptor that is readable while events are queued; owned by the\n"
     "notifier (watch it, never read, write or close it).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Notifier_slots[] = {
    {Py_tp_new, Notifier_new},
    {Py_tp_dealloc, Notifier_dealloc},
    {Py_tp_methods, Notifier_methods},
    {Py_tp_getset, Notifier_getset},
    {Py_tp_doc, "Notifier(): the library's mmpool_notifier, one fd for any number of tickets."},
    {0, NULL},
};

static PyType_Spec Notifier_spec = {
    "mmpool._core.Notifier", sizeof(NotifierObject), 0, Py_TPFLAGS_DEFAULT, Notifier_slots,
};

int notify_ticket(PoolObject *pool, mmpool_ticket ticket, PyObject *notifier_obj, uint64_t user, mmpool_status *status) {
    if (!PyObject_TypeCheck(notifier_obj, Notifier_Type)) {
        PyErr_SetString(PyExc_TypeError, "_notify: expected an mmpool._core.Notifier");
        return -1;
    }
    mmpool_notifier *notifier = ((NotifierObject *)notifier_obj)->notifier;
    CALL(pool, *status, mmpool_ticket_notify(pool->pool, ticket, notifier, user));
    return 0;
}

int notifier_type_init(PyObject *module) {
    Notifier_Type = (PyTypeObject *)PyType_FromSpec(&Notifier_spec);
    if (Notifier_Type == NULL || PyModule_AddObject(module, "Notifier", (PyObject *)Notifier_Type) < 0) return -1;
    Py_INCREF(Notifier_Type); /* the module's reference was stolen; keep ours */
    return 0;
}
