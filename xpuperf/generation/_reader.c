/* The streaming client's socket reads, in C (xpuperf.generation.openai_client).
 *
 * read() takes what every registered socket holds, in one call with no Python
 * code a socket, and stamps each read with the time the kernel received its
 * bytes (SO_TIMESTAMPNS), not the time it was read: a client that reads late (a
 * busy event loop, reads batched on a tick) does not move a token's time. A
 * read holding two chunks (a server's two writes before one read, or one
 * packet) has its last bytes' time: the kernel keeps one time for bytes that
 * wait together. Bytes without a time (the kernel turns its stamps on a moment
 * after a first socket asks) have the read's.
 *
 *     r = Reader()          an epoll set
 *     own = r.add(fd, key)  reads the connected socket fd from now on, through a
 *                           descriptor of its own (``own``, a duplicate of fd)
 *     r.read()              [(key, t_ns, bytes), ...]: a read of each socket that
 *                           has bytes, t_ns on time.perf_counter_ns's clock; b""
 *                           for the peer's close, an int (errno) for a failed
 *                           read: either ends that socket's reads
 *     r.fileno()            the epoll set's descriptor: readable while a socket is
 *     r.remove(own)         no longer, and closes ``own``
 *     r.close()             closes every descriptor (also when collected)
 *
 * The reader's own duplicate is closed by remove() only: an event loop that
 * closes its descriptor of the socket first (a failed write) cannot have that
 * number, reused by the next socket, read for the old one. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE 65536
#define EVENTS 256
#define NO_KEY (-1) /* no descriptor of ours */
#define ENDED (-2)  /* ours, its reads ended (the peer closed, a read failed) */

typedef struct {
    PyObject_HEAD
    int epoll;
    long long *keys; /* indexed by our descriptors: the key added with, NO_KEY or ENDED */
    size_t nkeys;
    size_t reading; /* descriptors whose reads have not ended */
    char buffer[READ_SIZE];
} Reader;

static long long ns(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* One read of ``fd``: its bytes and their arrival time (monotonic ns), the
 * kernel's where it gave one, else now. */
static ssize_t read_one(Reader *r, int fd, long long realtime_to_monotonic, long long *t_ns) {
    char control[CMSG_SPACE(sizeof(struct timespec))];
    struct iovec iov = {.iov_base = r->buffer, .iov_len = READ_SIZE};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = control, .msg_controllen = sizeof control};
    ssize_t got = recvmsg(fd, &msg, MSG_DONTWAIT);
    int error = errno;
    *t_ns = ns(CLOCK_MONOTONIC);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); got > 0 && c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            long long arrived = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec + realtime_to_monotonic;
            if (arrived <= *t_ns) *t_ns = arrived; /* not after the read (a clock step) */
        }
    }
    errno = error;
    return got;
}

static PyObject *Reader_read(Reader *r, PyObject *Py_UNUSED(unused)) {
    struct epoll_event events[EVENTS];
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    /* No more reads in all than there are sockets: where more are ready than one
     * wait returns it waits again, but a flood (sockets always ready) waits for
     * the next call, which the event loop makes after its other work. */
    size_t reads = 0, most = r->reading;
    int n;
    do {
        n = epoll_wait(r->epoll, events, EVENTS, 0);
        if (n < 0) {
            if (errno == EINTR) { n = EVENTS; continue; }
            Py_DECREF(out);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        /* The kernel stamps in CLOCK_REALTIME: moved onto the monotonic clock. */
        long long realtime_to_monotonic = ns(CLOCK_MONOTONIC) - ns(CLOCK_REALTIME);
        for (int i = 0; i < n && reads < most; i++) {
            int fd = events[i].data.fd;
            long long key = r->keys[fd], t_ns;
            if (key < 0) continue;
            ssize_t got = read_one(r, fd, realtime_to_monotonic, &t_ns);
            int error = got < 0 ? errno : 0;
            if (error == EAGAIN || error == EINTR) continue;
            PyObject *item = got < 0 ? Py_BuildValue("(LLi)", key, t_ns, error)
                                     : Py_BuildValue("(LLy#)", key, t_ns, r->buffer, (Py_ssize_t)got);
            if (!item || PyList_Append(out, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(item);
            reads++;
            if (got <= 0) { /* the end of this socket's reads; remove() closes it */
                epoll_ctl(r->epoll, EPOLL_CTL_DEL, fd, NULL);
                r->keys[fd] = ENDED;
                r->reading--;
            }
        }
    } while (n == EVENTS && reads < most);
    return out;
}

static PyObject *Reader_add(Reader *r, PyObject *args) {
    int fd;
    long long key;
    if (!PyArg_ParseTuple(args, "iL:add", &fd, &key)) return NULL;
    if (key < 0) return PyErr_Format(PyExc_ValueError, "add(%d, %lld): a key is >= 0", fd, key);
    if (r->epoll < 0) return PyErr_Format(PyExc_ValueError, "add(): the reader is closed");
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) return PyErr_SetFromErrno(PyExc_OSError);
    if ((size_t)own >= r->nkeys) {
        size_t nkeys = r->nkeys ? r->nkeys : 1024;
        while (nkeys <= (size_t)own) nkeys *= 2;
        long long *grown = realloc(r->keys, nkeys * sizeof(long long));
        if (!grown) {
            close(own);
            return PyErr_NoMemory();
        }
        for (size_t i = r->nkeys; i < nkeys; i++) grown[i] = NO_KEY;
        r->keys = grown, r->nkeys = nkeys;
    }
    int on = 1; /* without the kernel's times, a read's own time (read_one) */
    setsockopt(own, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = own};
    if (epoll_ctl(r->epoll, EPOLL_CTL_ADD, own, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        close(own);
        return NULL;
    }
    r->keys[own] = key;
    r->reading++;
    return PyLong_FromLong(own);
}

static PyObject *Reader_remove(Reader *r, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i:remove", &fd)) return NULL;
    if (fd >= 0 && (size_t)fd < r->nkeys && r->keys[fd] != NO_KEY) {
        if (r->keys[fd] != ENDED) epoll_ctl(r->epoll, EPOLL_CTL_DEL, fd, NULL), r->reading--;
        close(fd);
        r->keys[fd] = NO_KEY;
    }
    Py_RETURN_NONE;
}

static void close_all(Reader *r) {
    for (size_t fd = 0; fd < r->nkeys; fd++)
        if (r->keys[fd] != NO_KEY) close((int)fd), r->keys[fd] = NO_KEY;
    if (r->epoll >= 0) close(r->epoll), r->epoll = -1;
    r->reading = 0;
}

static PyObject *Reader_fileno(Reader *r, PyObject *Py_UNUSED(unused)) {
    if (r->epoll < 0) return PyErr_Format(PyExc_ValueError, "fileno(): the reader is closed");
    return PyLong_FromLong(r->epoll);
}

static PyObject *Reader_close(Reader *r, PyObject *Py_UNUSED(unused)) {
    close_all(r);
    Py_RETURN_NONE;
}

static PyObject *Reader_new(PyTypeObject *type, PyObject *args, PyObject *Py_UNUSED(kwargs)) {
    if (!PyArg_ParseTuple(args, ":Reader")) return NULL;
    Reader *r = (Reader *)type->tp_alloc(type, 0);
    if (!r) return NULL;
    r->epoll = epoll_create1(EPOLL_CLOEXEC);
    if (r->epoll < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(r);
        return NULL;
    }
    return (PyObject *)r;
}

static void Reader_dealloc(Reader *r) {
    close_all(r);
    free(r->keys);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyMethodDef Reader_methods[] = {
    {"add", (PyCFunction)Reader_add, METH_VARARGS, "add(fd, key) -> own: read the socket from now on"},
    {"read", (PyCFunction)Reader_read, METH_NOARGS, "read() -> [(key, t_ns, bytes | errno)]"},
    {"remove", (PyCFunction)Reader_remove, METH_VARARGS, "remove(own): no more reads; closes own"},
    {"fileno", (PyCFunction)Reader_fileno, METH_NOARGS, "fileno(): readable when a socket is"},
    {"close", (PyCFunction)Reader_close, METH_NOARGS, "close(): closes every descriptor"},
    {NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "xpuperf.generation._reader.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Reads every registered socket that has bytes in one call, each read stamped "
              "with its bytes' arrival.",
    .tp_new = Reader_new,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_reader",
    .m_doc = "Socket reads on a tick, stamped with their bytes' arrival.", .m_size = -1,
};

PyMODINIT_FUNC PyInit__reader(void) {
    if (PyType_Ready(&ReaderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
