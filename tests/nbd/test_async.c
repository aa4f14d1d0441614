/*
 * The server over a backend that completes however it likes: at once from
 * inside the call, from a later loop iteration, held and completed newest
 * first, or never until the server closes and cancels. Checks replies in
 * completion order, requests decoded behind a pending open, the errors a
 * backend returns, and that closing the server with work in flight releases
 * everything (nbdt_stop asserts uv_loop_close() == 0).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nbdt.h"

#define MEM_SIZE (1u << 20)
#define FAIL_BASE (MEM_SIZE - (64u << 10)) /* with fail set, I/O here fails, by offset */
#define MAX_HELD 64

typedef struct mem {
    uint8_t *data;
    bool read_only;
    bool defer;      /* complete opens, listings and ios from a later loop iteration */
    unsigned hold;   /* hold ios until this many are held, then complete them newest first */
    bool hold_forever;
    bool hold_opens; /* keep opens until before_close */
    bool fail;
    nbd_io_t *held[MAX_HELD];
    int held_status[MAX_HELD];
    unsigned nheld;
    nbd_open_t *held_open;
    uv_sem_t sem;     /* posted when signal_at ios (or an open) are held */
    unsigned signal_at;
    uv_loop_t *loop;
    /* counted on the server's thread, read after nbdt_stop() */
    unsigned opens, releases, cancels, ios, lists;
} mem_t;

typedef struct deferred {
    uv_work_t w;
    mem_t *m;
    nbd_io_t *io;
    nbd_open_t *op;
    nbd_list_t *list;
    int status;
} deferred_t;

static void nothing(uv_work_t *w)
{
    (void)w;
}

static void deferred_done(uv_work_t *w, int status)
{
    deferred_t *d = w->data;
    (void)status;
    if (d->io)
        nbd_io_done(d->io, d->status);
    if (d->op)
        nbd_open_done(d->op, d->status);
    if (d->list) {
        nbd_list_add(d->list, "mem", "an in-memory disk");
        nbd_list_add(d->list, "mem2", NULL);
        nbd_list_done(d->list, 0);
    }
    free(d);
}

/* Finish from a later loop iteration: a pool round trip with no work. */
static void defer(mem_t *m, nbd_io_t *io, nbd_open_t *op, nbd_list_t *list, int status)
{
    deferred_t *d = calloc(1, sizeof *d);
    cr_assert_not_null(d);
    d->w.data = d;
    d->m = m;
    d->io = io;
    d->op = op;
    d->list = list;
    d->status = status;
    cr_assert_eq(uv_queue_work(m->loop, &d->w, nothing, deferred_done), 0);
}

static void mem_open(void *backend, nbd_open_t *op)
{
    mem_t *m = backend;
    if (strcmp(op->name, "mem") != 0 && strcmp(op->name, "mem2") != 0) {
        op->message = "no such disk in memory";
        nbd_open_done(op, -ENOENT);
        return;
    }
    m->opens++;
    op->export = m;
    op->size = MEM_SIZE;
    op->read_only = m->read_only;
    if (m->hold_opens) {
        m->held_open = op;
        uv_sem_post(&m->sem);
    } else if (m->defer) {
        defer(m, NULL, op, NULL, 0);
    } else {
        nbd_open_done(op, 0);
    }
}

static void mem_list(void *backend, nbd_list_t *op)
{
    mem_t *m = backend;
    m->lists++;
    defer(m, NULL, NULL, op, 0);
}

static int mem_fail_status(const mem_t *m, const nbd_io_t *io)
{
    if (!m->fail || io->offset < FAIL_BASE)
        return 0;
    static const int by_block[] = {-EIO, -ENOSPC, -EDQUOT, -EROFS, -ENOTSUP, -ESHUTDOWN, -EOVERFLOW, -ENOMEM};
    return by_block[((io->offset - FAIL_BASE) / 4096) % 8];
}

static void mem_io(nbd_io_t *io)
{
    mem_t *m = io->export;
    m->ios++;
    int status = mem_fail_status(m, io);
    if (status == 0) {
        switch (io->kind) {
        case NBD_IO_READ:
            memcpy(io->buf, m->data + io->offset, io->length);
            break;
        case NBD_IO_WRITE:
            memcpy(m->data + io->offset, io->buf, io->length);
            break;
        case NBD_IO_TRIM:
        case NBD_IO_ZERO:
            memset(m->data + io->offset, 0, io->length);
            break;
        case NBD_IO_FLUSH:
            break;
        }
    }
    if (m->hold > 0 || m->hold_forever) {
        cr_assert_lt(m->nheld, MAX_HELD);
        m->held[m->nheld] = io;
        m->held_status[m->nheld] = status;
        m->nheld++;
        if (m->nheld == m->signal_at)
            uv_sem_post(&m->sem);
        if (!m->hold_forever && m->nheld == m->hold) {
            /* Newest first, from inside the call that filled the batch. */
            while (m->nheld > 0) {
                m->nheld--;
                nbd_io_done(m->held[m->nheld], m->held_status[m->nheld]);
            }
        }
    } else if (m->defer) {
        defer(m, io, NULL, NULL, status);
    } else {
        nbd_io_done(io, status);
    }
}

static void mem_cancel(nbd_io_t *io)
{
    mem_t *m = io->export;
    for (unsigned i = 0; i < m->nheld; i++) {
        if (m->held[i] == io) {
            m->held[i] = m->held[m->nheld - 1];
            m->held_status[i] = m->held_status[m->nheld - 1];
            m->nheld--;
            m->cancels++;
            nbd_io_done(io, -ECANCELED);
            return;
        }
    }
}

static void mem_release(void *export)
{
    mem_t *m = export;
    m->releases++;
}

static const nbd_backend_ops_t mem_ops = {
    .open = mem_open,
    .list = mem_list,
    .read = mem_io,
    .write = mem_io,
    .flush = mem_io,
    .trim = mem_io,
    .zero = mem_io,
    .cancel = mem_cancel,
    .release = mem_release,
};

/* The same without cancel(): the server must wait for the backend. */
static const nbd_backend_ops_t mem_ops_nocancel = {
    .open = mem_open,
    .read = mem_io,
    .write = mem_io,
    .release = mem_release,
};

static nbdt_server_t t;
static mem_t m;

static void start(const nbd_backend_ops_t *ops)
{
    m.loop = &t.loop;
    m.data = calloc(1, MEM_SIZE);
    cr_assert_not_null(m.data);
    for (uint32_t i = 0; i < MEM_SIZE; i++)
        m.data[i] = (uint8_t)(i * 7 + (i >> 12));
    cr_assert_eq(uv_sem_init(&m.sem, 0), 0);
    nbdt_start_with(&t, ops, &m);
}

static void setup(void)
{
    tmt_log_capture();
    memset(&m, 0, sizeof m);
    nbdt_init(&t, "nbd-async");
}

/* Every test ends with finish(): assertions in a Criterion .fini are
 * printed but do not fail the test. */
static void finish(void)
{
    nbdt_stop(&t);
    cr_assert_eq(m.opens, m.releases, "every open is released exactly once");
}

static void teardown(void)
{
    nbdt_stop(&t);
    if (m.data != NULL) {
        uv_sem_destroy(&m.sem);
        free(m.data);
    }
}

TestSuite(async, .init = setup, .fini = teardown, .timeout = 60);

Test(async, replies_go_out_in_completion_order)
{
    m.hold = 8;
    start(&mem_ops);
    int fd = nbdt_open(t.port, "mem", NULL, NULL);
    for (uint64_t h = 0; h < 8; h++)
        nbdt_send_req(fd, 0, NBD_CMD_READ, h, h * 1000, 100);
    for (uint64_t want = 8; want-- > 0;) {
        uint32_t err;
        uint64_t h;
        uint8_t buf[100];
        cr_assert(nbdt_recv_reply(fd, &err, &h));
        cr_assert_eq(err, 0);
        cr_assert_eq(h, want, "reply for handle %llu, expected %llu", (unsigned long long)h,
                     (unsigned long long)want);
        cr_assert(nbdt_recv(fd, buf, sizeof buf));
        cr_assert(memcmp(buf, m.data + h * 1000, sizeof buf) == 0);
    }
    close(fd);
    finish();
}

Test(async, completions_across_connections)
{
    /* Batches of 8 ios complete inside whichever call fills the batch, so
     * one connection's request completes the others' while they wait in the
     * queue of connections with input left over (64 requests each is over
     * one wakeup's budget). */
    enum { CONNS = 4, PER = 64, LEN = 512 };
    m.hold = 8;
    start(&mem_ops);
    int fds[CONNS];
    for (int c = 0; c < CONNS; c++)
        fds[c] = nbdt_open(t.port, "mem", NULL, NULL);
    for (int c = 0; c < CONNS; c++) {
        uint8_t burst[PER * NBD_REQ_HDR_LEN];
        for (int i = 0; i < PER; i++) {
            uint8_t *q = burst + i * NBD_REQ_HDR_LEN;
            tm_put_be32(q, NBD_REQUEST_MAGIC);
            tm_put_be16(q + 4, 0);
            tm_put_be16(q + 6, NBD_CMD_READ);
            tm_put_be64(q + 8, (uint64_t)(c * PER + i));
            tm_put_be64(q + 16, (uint64_t)(c * PER + i) * LEN);
            tm_put_be32(q + 24, LEN);
        }
        nbdt_send(fds[c], burst, sizeof burst);
    }
    for (int c = 0; c < CONNS; c++) {
        bool seen[PER] = {false};
        for (int k = 0; k < PER; k++) {
            uint32_t err;
            uint64_t h;
            uint8_t buf[LEN];
            cr_assert(nbdt_recv_reply(fds[c], &err, &h), "connection %d: closed after %d replies", c, k);
            cr_assert_eq(err, 0);
            cr_assert(h >= (uint64_t)c * PER && h < (uint64_t)(c + 1) * PER, "connection %d got handle %llu", c,
                      (unsigned long long)h);
            cr_assert(!seen[h - (uint64_t)c * PER]);
            seen[h - (uint64_t)c * PER] = true;
            cr_assert(nbdt_recv(fds[c], buf, LEN));
            cr_assert(memcmp(buf, m.data + h * LEN, LEN) == 0);
        }
        nbdt_send_req(fds[c], 0, NBD_CMD_DISC, 0, 0, 0);
        cr_assert(nbdt_at_eof(fds[c]));
        close(fds[c]);
    }
    cr_assert_eq(m.nheld, 0);
    finish();
}

Test(async, synchronous_backend_under_a_long_pipeline)
{
    start(&mem_ops);
    int fd = nbdt_open(t.port, "mem", NULL, NULL);
    enum { N = 500, WLEN = 512, RLEN = 64 };
    static uint8_t w[WLEN];
    for (int i = 0; i < N; i++) {
        memset(w, (i * 13) & 0xff, sizeof w);
        nbdt_send_req(fd, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, (uint64_t)i, (uint64_t)i * WLEN, WLEN);
        nbdt_send(fd, w, sizeof w);
    }
    for (int k = 0; k < N; k++) {
        uint32_t err;
        uint64_t h;
        cr_assert(nbdt_recv_reply(fd, &err, &h));
        cr_assert_eq(err, 0);
        cr_assert_eq(h, (uint64_t)k, "a synchronous backend answers in order");
    }
    for (int i = 0; i < N; i++)
        nbdt_send_req(fd, 0, NBD_CMD_READ, (uint64_t)i, (uint64_t)i * WLEN + 100, RLEN);
    for (int k = 0; k < N; k++) {
        uint32_t err;
        uint64_t h;
        uint8_t buf[RLEN];
        cr_assert(nbdt_recv_reply(fd, &err, &h));
        cr_assert_eq(err, 0);
        cr_assert_eq(h, (uint64_t)k);
        cr_assert(nbdt_recv(fd, buf, sizeof buf));
        for (int j = 0; j < RLEN; j++)
            cr_assert_eq(buf[j], (k * 13) & 0xff);
    }
    nbdt_send_req(fd, 0, NBD_CMD_DISC, 0, 0, 0);
    cr_assert(nbdt_at_eof(fd));
    close(fd);
    finish();
}

Test(async, requests_wait_behind_a_late_open)
{
    m.defer = true;
    start(&mem_ops);
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);

    /* A listing that completes later. */
    nbdt_send_opt(fd, NBD_OPT_LIST, NULL, 0);
    nbdt_opt_reply_t r;
    cr_assert(nbdt_recv_opt_reply(fd, &r));
    cr_assert_eq(r.type, NBD_REP_SERVER);
    cr_assert_eq(r.len, 4 + 3 + strlen("an in-memory disk"));
    cr_assert(memcmp(r.data + 4, "meman in-memory disk", r.len - 4) == 0);
    cr_assert(nbdt_recv_opt_reply(fd, &r));
    cr_assert_eq(r.type, NBD_REP_SERVER);
    cr_assert(nbdt_recv_opt_reply(fd, &r));
    cr_assert_eq(r.type, NBD_REP_ACK);

    /* The backend's own message for an unknown export. */
    uint8_t go[64];
    size_t len = nbdt_go_data(go, "disk9", NULL, 0);
    nbdt_send_opt(fd, NBD_OPT_GO, go, (uint32_t)len);
    cr_assert(nbdt_recv_opt_reply(fd, &r));
    cr_assert_eq(r.type, NBD_REP_ERR_UNKNOWN);
    cr_assert_str_eq((char *)r.data, "no such disk in memory");

    /* GO and a pipelined READ and WRITE in one send, before the open (which
     * completes later) has answered: decoded once it has. */
    len = nbdt_go_data(go, "mem", NULL, 0);
    uint8_t burst[512];
    size_t n = 0;
    tm_put_be64(burst, NBD_IHAVEOPT);
    tm_put_be32(burst + 8, NBD_OPT_GO);
    tm_put_be32(burst + 12, (uint32_t)len);
    memcpy(burst + 16, go, len);
    n = 16 + len;
    uint8_t req[NBD_REQ_HDR_LEN];
    tm_put_be32(req, NBD_REQUEST_MAGIC);
    tm_put_be16(req + 4, 0);
    tm_put_be16(req + 6, NBD_CMD_WRITE);
    tm_put_be64(req + 8, 41);
    tm_put_be64(req + 16, 8192);
    tm_put_be32(req + 24, 8);
    memcpy(burst + n, req, sizeof req);
    n += sizeof req;
    memcpy(burst + n, "ABCDEFGH", 8);
    n += 8;
    tm_put_be16(req + 6, NBD_CMD_READ);
    tm_put_be64(req + 8, 42);
    tm_put_be64(req + 16, 8190);
    tm_put_be32(req + 24, 12);
    memcpy(burst + n, req, sizeof req);
    n += sizeof req;
    nbdt_send(fd, burst, n);

    do {
        cr_assert(nbdt_recv_opt_reply(fd, &r));
        cr_assert_eq(r.opt, NBD_OPT_GO);
    } while (r.type == NBD_REP_INFO);
    cr_assert_eq(r.type, NBD_REP_ACK);
    /* Both complete from the pool, in either order; the backend applied the
     * write when it got it, before the read. */
    bool got_write = false, got_read = false;
    for (int k = 0; k < 2; k++) {
        uint32_t err;
        uint64_t h;
        cr_assert(nbdt_recv_reply(fd, &err, &h));
        cr_assert_eq(err, 0);
        if (h == 41) {
            got_write = true;
            continue;
        }
        cr_assert_eq(h, 42);
        got_read = true;
        uint8_t buf[12];
        cr_assert(nbdt_recv(fd, buf, sizeof buf));
        cr_assert(memcmp(buf + 2, "ABCDEFGH", 8) == 0);
        cr_assert_eq(buf[0], m.data[8190]);
    }
    cr_assert(got_write && got_read);
    close(fd);
    finish();
}

Test(async, backend_errors_become_nbd_errors)
{
    m.fail = true;
    start(&mem_ops);
    int fd = nbdt_open(t.port, "mem", NULL, NULL);
    static const uint32_t want[] = {NBD_EIO,       NBD_ENOSPC,    NBD_ENOSPC, NBD_EPERM,
                                    NBD_EIO,       NBD_ESHUTDOWN, NBD_EOVERFLOW, NBD_ENOMEM};
    uint8_t buf[4096];
    memset(buf, 1, sizeof buf);
    for (unsigned i = 0; i < 8; i++) {
        uint64_t off = FAIL_BASE + (uint64_t)i * 4096;
        /* A failed READ sends no data: the next reply must parse. */
        cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, off, 4096, NULL, buf), want[i], "read %u", i);
        cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE, off, 4096, buf, NULL), want[i], "write %u", i);
        cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE_ZEROES, off, 10, NULL, NULL), want[i], "zero %u", i);
    }
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, 0, 4096, NULL, buf), 0);
    cr_assert(memcmp(buf, m.data, 4096) == 0);
    nbdt_send_req(fd, 0, NBD_CMD_DISC, 0, 0, 0);
    cr_assert(nbdt_at_eof(fd));
    close(fd);
    finish();
}

Test(async, stats_count_what_happened)
{
    start(&mem_ops);
    int fd = nbdt_open(t.port, "mem", NULL, NULL);
    uint8_t buf[1000];
    memset(buf, 9, sizeof buf);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE, 0, 1000, buf, NULL), 0);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, 0, 300, NULL, buf), 0);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, MEM_SIZE, 1, NULL, buf), NBD_EINVAL);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_FLUSH, 0, 0, NULL, NULL), 0);
    nbdt_send_req(fd, 0, NBD_CMD_DISC, 0, 0, 0);
    cr_assert(nbdt_at_eof(fd));
    close(fd);
    fd = nbdt_connect(t.port);
    nbdt_handshake(fd, 0x80);
    cr_assert(nbdt_at_eof(fd));
    close(fd);
    nbdt_stop(&t);
    cr_assert_eq(t.stats.conns_accepted, 2);
    cr_assert_eq(t.stats.conns_open, 0);
    cr_assert_eq(t.stats.conns_dropped, 1);
    cr_assert_eq(t.stats.requests, 5);
    cr_assert_eq(t.stats.request_errors, 1);
    cr_assert_eq(t.stats.bytes_written, 1000);
    cr_assert_eq(t.stats.bytes_read, 300);
    cr_assert_eq(m.ios, 3);
    finish();
}

Test(async, closing_cancels_what_is_in_flight)
{
    m.hold_forever = true;
    m.signal_at = 5;
    start(&mem_ops);
    int fd = nbdt_open(t.port, "mem", NULL, NULL);
    int fd2 = nbdt_connect(t.port); /* one more, idle in the handshake */
    uint8_t w[4096];
    memset(w, 0x42, sizeof w);
    for (uint64_t h = 0; h < 4; h++)
        nbdt_send_req(fd, 0, NBD_CMD_READ, h, h * 4096, 4096);
    nbdt_send_req(fd, 0, NBD_CMD_WRITE, 4, 65536, sizeof w);
    nbdt_send(fd, w, sizeof w);
    uv_sem_wait(&m.sem); /* the backend holds all five */

    nbdt_stop(&t);
    cr_assert_eq(m.cancels, 5);
    cr_assert_eq(m.nheld, 0);
    cr_assert(nbdt_at_eof(fd), "a cancelled request got a reply");
    uint8_t g[NBD_GREETING_LEN];
    cr_assert(nbdt_recv(fd2, g, sizeof g));
    cr_assert(nbdt_at_eof(fd2));
    close(fd);
    close(fd2);
    finish();
}

static void complete_held_later(void *backend)
{
    mem_t *mm = backend;
    /* After this returns the server closes; the completions arrive after
     * that, on a connection that is closing, and must only be accounted. */
    while (mm->nheld > 0) {
        mm->nheld--;
        defer(mm, mm->held[mm->nheld], NULL, NULL, 0);
    }
    if (mm->held_open) {
        defer(mm, NULL, mm->held_open, NULL, 0);
        mm->held_open = NULL;
    }
}

Test(async, closing_waits_for_a_backend_that_cannot_cancel)
{
    m.hold_forever = true;
    m.signal_at = 3;
    t.before_close = complete_held_later;
    start(&mem_ops_nocancel);
    int fd = nbdt_open(t.port, "mem", NULL, NULL);
    for (uint64_t h = 0; h < 3; h++)
        nbdt_send_req(fd, 0, NBD_CMD_READ, h, 0, 512);
    uv_sem_wait(&m.sem);
    nbdt_stop(&t);
    cr_assert_eq(m.cancels, 0);
    cr_assert_eq(m.releases, 1);
    close(fd);
    finish();
}

Test(async, closing_during_a_pending_open_releases_it)
{
    m.hold_opens = true;
    t.before_close = complete_held_later;
    start(&mem_ops);
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint8_t go[64];
    size_t len = nbdt_go_data(go, "mem", NULL, 0);
    nbdt_send_opt(fd, NBD_OPT_GO, go, (uint32_t)len);
    uv_sem_wait(&m.sem); /* the open is with the backend */
    nbdt_stop(&t);
    cr_assert_eq(m.opens, 1);
    cr_assert_eq(m.releases, 1, "the open that completed after close was released");
    cr_assert(nbdt_at_eof(fd));
    close(fd);
    finish();
}

static void on_closed(void *arg)
{
    *(int *)arg += 1;
}

Test(async, listen_addresses)
{
    /* This one runs a loop of its own on the test thread. */
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    nbd_server_t *srv;
    nbd_backend_ops_t bad = mem_ops;
    bad.read = NULL;
    cr_assert_eq(nbd_server_new(&loop, &bad, &m, &srv), -EINVAL);
    cr_assert_null(srv);

    cr_assert_eq(nbd_server_new(&loop, &mem_ops, &m, &srv), 0);
    cr_assert_lt(nbd_server_port(srv), 0, "no port before listening");
    const char *bad_addrs[] = {"127.0.0.1", "localhost", "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1:x1",
                               "::1:0",     "[::1]",       "[::1]0",          ":0",         "[]:0",
                               "300.1.1.1:0", "127.0.0.1:123456"};
    for (size_t i = 0; i < sizeof bad_addrs / sizeof *bad_addrs; i++)
        cr_assert_eq(nbd_server_listen(srv, bad_addrs[i]), -EINVAL, "%s", bad_addrs[i]);
    int rc = nbd_server_listen(srv, "[::1]:0");
    if (rc == 0) {
        cr_assert_gt(nbd_server_port(srv), 0);
    } else {
        /* No IPv6 on this host; IPv4 then. */
        cr_log_warn("[::1] not available (%s); listening on IPv4", uv_strerror(rc));
        nbd_server_t *srv4;
        int closed = 0;
        nbd_server_close(srv, on_closed, &closed);
        cr_assert_eq(nbd_server_new(&loop, &mem_ops, &m, &srv4), 0);
        srv = srv4;
        uv_run(&loop, UV_RUN_DEFAULT);
        cr_assert_eq(closed, 1);
        cr_assert_eq(nbd_server_listen(srv, "127.0.0.1:0"), 0);
    }
    cr_assert_eq(nbd_server_listen(srv, "127.0.0.1:0"), -EBUSY);
    int closed = 0;
    nbd_server_close(srv, on_closed, &closed);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(closed, 1);
    cr_assert_eq(uv_loop_close(&loop), 0);

    /* The fixture's server, so that teardown has one to stop. */
    start(&mem_ops);
    finish();
}
