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
 *     r.hold(own)           from now on, until read() returns one of its reads,
 *                           a read of ``own`` that is one whole chunk of a chunked
 *                           body holding one server-sent event (a token's, as a
 *                           server streams them) is held, not returned
 *     r.take(own)           (events, times): the held events' data (bytes, its
 *                           "data:" field stripped) and their reads' times, in
 *                           order, None where none is held; they are held no more
 *     r.take_all()          [(key, events, times), ...] of every socket holding any
 *     r.reads               the reads made so far, returned or held
 *     r.fileno()            the epoll set's descriptor: readable while a socket is
 *     r.remove(own)         no longer, and closes ``own`` (what it held is dropped)
 *     r.close()             closes every descriptor (also when collected)
 *
 * Holding is what keeps a stream's tokens cheap: no Python object a read but
 * the event's bytes and its time, parsed in one go later (Answer.replay). A
 * server's stream end (``data: [DONE]``, the body's last chunk, a close) is
 * never held, nor an event naming "error": they are returned at once, and
 * what was held is taken before them.
 *
 * The reader's own duplicate is closed by remove() only: an event loop that
 * closes its descriptor of the socket first (a failed write) cannot have that
 * number, reused by the next socket, read for the old one. */
#define _GNU_SOURCE /* memmem */
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
/* A socket holding this many bytes of events returns its next read (which
 * takes them): a server's bytes are not kept unbounded until a window's end. */
#define HOLD_BYTES (1 << 20)

typedef struct {
    long long key;    /* the key added with, NO_KEY or ENDED */
    int hold;         /* one-event chunks are held (hold()) */
    PyObject *events; /* held: the events' data (bytes); NULL: none held */
    PyObject *times;  /* and their reads' times (int) */
    size_t held;      /* bytes of the events held */
} Socket;

typedef struct {
    PyObject_HEAD
    int epoll;
    Socket *sockets; /* indexed by our descriptors */
    size_t nsockets;
    size_t reading; /* descriptors whose reads have not ended */
    size_t holding; /* descriptors holding events */
    unsigned long long reads; /* every read with bytes or an end, held or returned */
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

static int blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

/* Whether ``b``'s ``n`` bytes are one whole chunk of a chunked body holding one
 * event of one data line and nothing else (answer.py's _ONE_EVENT): its size in
 * hex, CRLF, "data:" and the line, "\n\n", CRLF, the size that of all but the
 * size line and the last CRLF. Sets the data line, stripped as bytes.strip()
 * strips, which is neither [DONE] (the stream's end) nor one naming "error" (a
 * server's error mid-stream): those are returned at once, not held. */
static int one_event(const char *b, ssize_t n, const char **data, ssize_t *length) {
    ssize_t hex = 0, size = 0;
    for (; hex < n && hex < 9; hex++) {
        char c = b[hex];
        int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (digit < 0) break;
        size = size * 16 + digit;
    }
    if (hex < 1 || hex > 8 || n < hex + 11 || size != n - hex - 4) return 0;
    if (memcmp(b + hex, "\r\ndata:", 7) || memcmp(b + n - 4, "\n\n\r\n", 4)) return 0;
    const char *start = b + hex + 7, *end = b + n - 4;
    if (memchr(start, '\n', end - start)) return 0;
    while (start < end && blank(*start)) start++;
    while (end > start && blank(end[-1])) end--;
    if (end - start == 6 && !memcmp(start, "[DONE]", 6)) return 0;
    if (memmem(start, end - start, "\"error\"", 7)) return 0; /* a server's error: at once */
    *data = start, *length = end - start;
    return 1;
}

/* Holds one event of ``s``: 0, or -1 with an exception set. */
static int hold_one(Reader *r, Socket *s, const char *data, ssize_t length, long long t_ns) {
    if (!s->events) {
        if (!(s->events = PyList_New(0)) || !(s->times = PyList_New(0))) {
            Py_CLEAR(s->events);
            return -1;
        }
        r->holding++;
    }
    PyObject *event = PyBytes_FromStringAndSize(data, length), *t = PyLong_FromLongLong(t_ns);
    int failed = !event || !t || PyList_Append(s->events, event) < 0 || PyList_Append(s->times, t) < 0;
    s->held += length;
    Py_XDECREF(event);
    Py_XDECREF(t);
    return failed ? -1 : 0;
}

static void drop_held(Reader *r, Socket *s) {
    if (s->events) r->holding--;
    Py_CLEAR(s->events);
    Py_CLEAR(s->times);
    s->held = 0;
}

/* What ``s`` holds, as (events, times), and it holds none; NULL where none. */
static PyObject *take_held(Reader *r, Socket *s) {
    if (!s->events) return NULL;
    PyObject *held = PyTuple_Pack(2, s->events, s->times);
    if (!held) return NULL;
    drop_held(r, s);
    return held;
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
            Socket *s = &r->sockets[fd];
            long long key = s->key, t_ns;
            if (key < 0) continue;
            ssize_t got = read_one(r, fd, realtime_to_monotonic, &t_ns);
            int error = got < 0 ? errno : 0;
            if (error == EAGAIN || error == EINTR) continue;
            const char *data;
            ssize_t length;
            if (got > 0 && s->hold && s->held < HOLD_BYTES && one_event(r->buffer, got, &data, &length)) {
                if (hold_one(r, s, data, length, t_ns) < 0) {
                    Py_DECREF(out);
                    return NULL;
                }
                reads++, r->reads++;
                continue;
            }
            s->hold = 0; /* the answer's parser reads on from this read's bytes */
            PyObject *item = got < 0 ? Py_BuildValue("(LLi)", key, t_ns, error)
                                     : Py_BuildValue("(LLy#)", key, t_ns, r->buffer, (Py_ssize_t)got);
            if (!item || PyList_Append(out, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(item);
            reads++, r->reads++;
            if (got <= 0) { /* the end of this socket's reads; remove() closes it */
                epoll_ctl(r->epoll, EPOLL_CTL_DEL, fd, NULL);
                s->key = ENDED;
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
    if ((size_t)own >= r->nsockets) {
        size_t n = r->nsockets ? r->nsockets : 1024;
        while (n <= (size_t)own) n *= 2;
        Socket *grown = realloc(r->sockets, n * sizeof(Socket));
        if (!grown) {
            close(own);
            return PyErr_NoMemory();
        }
        for (size_t i = r->nsockets; i < n; i++) grown[i] = (Socket){.key = NO_KEY};
        r->sockets = grown, r->nsockets = n;
    }
    int on = 1; /* without the kernel's times, a read's own time (read_one) */
    setsockopt(own, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = own};
    if (epoll_ctl(r->epoll, EPOLL_CTL_ADD, own, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        close(own);
        return NULL;
    }
    r->sockets[own] = (Socket){.key = key};
    r->reading++;
    return PyLong_FromLong(own);
}

/* Our descriptor ``fd`` (one add() returned and remove() has not closed), or NULL. */
static Socket *ours(Reader *r, int fd) {
    return fd >= 0 && (size_t)fd < r->nsockets && r->sockets[fd].key != NO_KEY ? &r->sockets[fd] : NULL;
}

static PyObject *Reader_remove(Reader *r, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i:remove", &fd)) return NULL;
    Socket *s = ours(r, fd);
    if (s) {
        if (s->key != ENDED) epoll_ctl(r->epoll, EPOLL_CTL_DEL, fd, NULL), r->reading--;
        close(fd);
        drop_held(r, s);
        *s = (Socket){.key = NO_KEY};
    }
    Py_RETURN_NONE;
}

static PyObject *Reader_hold(Reader *r, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i:hold", &fd)) return NULL;
    Socket *s = ours(r, fd);
    if (!s) return PyErr_Format(PyExc_ValueError, "hold(%d): not a descriptor of the reader's", fd);
    s->hold = 1;
    Py_RETURN_NONE;
}

static PyObject *Reader_take(Reader *r, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i:take", &fd)) return NULL;
    Socket *s = ours(r, fd);
    PyObject *held = s ? take_held(r, s) : NULL;
    if (held || PyErr_Occurred()) return held;
    Py_RETURN_NONE;
}

static PyObject *Reader_take_all(Reader *r, PyObject *Py_UNUSED(unused)) {
    PyObject *out = PyList_New(0);
    for (size_t fd = 0; out && r->holding && fd < r->nsockets; fd++) {
        Socket *s = &r->sockets[fd];
        if (!s->events) continue;
        long long key = s->key;
        PyObject *held = take_held(r, s), *item = held ? Py_BuildValue("(LOO)", key,
            PyTuple_GET_ITEM(held, 0), PyTuple_GET_ITEM(held, 1)) : NULL;
        if (!item || PyList_Append(out, item) < 0) Py_CLEAR(out);
        Py_XDECREF(item);
        Py_XDECREF(held);
    }
    return out;
}

static void close_all(Reader *r) {
    for (size_t fd = 0; fd < r->nsockets; fd++) {
        Socket *s = &r->sockets[fd];
        if (s->key != NO_KEY) close((int)fd), drop_held(r, s), *s = (Socket){.key = NO_KEY};
    }
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
    free(r->sockets);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *Reader_reads(Reader *r, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(r->reads);
}

static PyGetSetDef Reader_getset[] = {
    {"reads", (getter)Reader_reads, NULL, "the reads made so far, held ones too", NULL},
    {NULL},
};

static PyMethodDef Reader_methods[] = {
    {"add", (PyCFunction)Reader_add, METH_VARARGS, "add(fd, key) -> own: read the socket from now on"},
    {"read", (PyCFunction)Reader_read, METH_NOARGS, "read() -> [(key, t_ns, bytes | errno)]"},
    {"hold", (PyCFunction)Reader_hold, METH_VARARGS, "hold(own): hold one-event chunks until a read is returned"},
    {"take", (PyCFunction)Reader_take, METH_VARARGS, "take(own) -> (events, times) | None: what own held"},
    {"take_all", (PyCFunction)Reader_take_all, METH_NOARGS, "take_all() -> [(key, events, times)]"},
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
    .tp_getset = Reader_getset,
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
