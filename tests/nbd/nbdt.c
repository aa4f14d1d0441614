/* NBD test helpers; the contracts are in nbdt.h. */
#include "nbdt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/mem.h"

extern char **environ;

/* ---- the server thread ---------------------------------------------------- */

void nbdt_init(nbdt_server_t *t, const char *tag)
{
    memset(t, 0, sizeof *t);
    signal(SIGPIPE, SIG_IGN);
    /* the server's and the file backend's allocations, checked at the end */
    tmt_alloc_count();
    tmt_mkdtemp(t->dir, tag);
    cr_assert_eq(uv_loop_init(&t->loop), 0);
    cr_assert_eq(nbd_file_backend_new(&t->loop, &t->fb), 0);
    t->ops = &nbd_file_ops;
    t->backend = t->fb;
}

void nbdt_expected(uint8_t *buf, uint64_t off, size_t len, uint64_t size, uint64_t seed)
{
    (void)size;
    if (seed == 0) {
        memset(buf, 0, len);
        return;
    }
    /* Images are filled in 4 KiB blocks, each from (seed, block number), so
     * any range can be recomputed. */
    while (len > 0) {
        uint64_t blk = off / 4096, in = off % 4096;
        uint8_t block[4096];
        tmt_fill(block, sizeof block, seed, blk, false);
        size_t n = 4096 - in < len ? 4096 - in : len;
        memcpy(buf, block + in, n);
        buf += n;
        off += n;
        len -= n;
    }
}

const char *nbdt_image(nbdt_server_t *t, const char *name, uint64_t size, uint64_t seed, bool read_only)
{
    cr_assert_lt(t->nimages, NBDT_MAX_EXPORTS);
    char *path = t->images[t->nimages];
    int n = snprintf(path, PATH_MAX, "%s/export%u.img", t->dir, t->nimages);
    cr_assert(n > 0 && n < PATH_MAX);
    t->nimages++;
    tmt_file_create(path, (off_t)size);
    if (seed != 0) {
        static uint8_t buf[1 << 20];
        for (uint64_t off = 0; off < size; off += sizeof buf) {
            size_t len = size - off < sizeof buf ? (size_t)(size - off) : sizeof buf;
            nbdt_expected(buf, off, len, size, seed);
            tmt_file_write(path, (off_t)off, buf, len);
        }
    }
    int rc = nbd_file_backend_add(t->fb, name, path, read_only);
    cr_assert_eq(rc, 0, "nbd_file_backend_add(%s): %s", name, tmt_errname(rc));
    return path;
}

static void nbdt__thread(void *arg)
{
    nbdt_server_t *t = arg;
    uv_run(&t->loop, UV_RUN_DEFAULT);
}

static void nbdt__closed(void *arg)
{
    nbdt_server_t *t = arg;
    uv_close((uv_handle_t *)&t->stop, NULL);
}

static void nbdt__on_stop(uv_async_t *a)
{
    nbdt_server_t *t = a->data;
    nbd_server_get_stats(t->srv, &t->stats);
    if (t->before_close)
        t->before_close(t->backend);
    nbd_server_close(t->srv, nbdt__closed, t);
    t->srv = NULL;
}

void nbdt_start_with(nbdt_server_t *t, const nbd_backend_ops_t *ops, void *backend)
{
    t->ops = ops;
    t->backend = backend;
    int rc = nbd_server_new(&t->loop, ops, backend, &t->srv);
    cr_assert_eq(rc, 0, "nbd_server_new: %s", tmt_errname(rc));
    rc = nbd_server_listen(t->srv, "127.0.0.1:0");
    cr_assert_eq(rc, 0, "nbd_server_listen: %s", tmt_errname(rc));
    t->port = nbd_server_port(t->srv);
    cr_assert_gt(t->port, 0);
    cr_assert_eq(uv_async_init(&t->loop, &t->stop, nbdt__on_stop), 0);
    t->stop.data = t;
    /* Everything above happened before the thread exists; from here on only
     * that thread touches the loop. */
    cr_assert_eq(uv_thread_create(&t->thread, nbdt__thread, t), 0);
    t->running = true;
}

void nbdt_start(nbdt_server_t *t)
{
    nbdt_start_with(t, &nbd_file_ops, t->fb);
}

void nbdt_stop(nbdt_server_t *t)
{
    if (t->stopped)
        return;
    t->stopped = true;
    if (t->running) {
        cr_assert_eq(uv_async_send(&t->stop), 0);
        cr_assert_eq(uv_thread_join(&t->thread), 0);
        t->running = false;
    }
    int rc = uv_loop_close(&t->loop);
    cr_assert_eq(rc, 0, "uv_loop_close: %s (a handle or request was left open)", uv_strerror(rc));
    rc = nbd_file_backend_free(t->fb);
    cr_assert_eq(rc, 0, "nbd_file_backend_free: %s (an export was not released)", tmt_errname(rc));
    t->fb = NULL;
    long live = tmt_alloc_live();
    cr_assert_eq(live, 0, "%ld allocations of the server or backend were not freed", live);
    tmt_rmtree(t->dir);
}

const char *nbdt_uri(const nbdt_server_t *t, const char *name)
{
    static char bufs[8][PATH_MAX];
    static unsigned next;
    char *b = bufs[next++ % 8];
    int n;
    if (name == NULL)
        n = snprintf(b, PATH_MAX, "nbd://127.0.0.1:%d", t->port);
    else
        n = snprintf(b, PATH_MAX, "nbd://127.0.0.1:%d/%s", t->port, name);
    cr_assert(n > 0 && n < PATH_MAX);
    return b;
}

const char *nbdt_path(const nbdt_server_t *t, const char *rel)
{
    static char bufs[8][PATH_MAX];
    static unsigned next;
    char *b = bufs[next++ % 8];
    int n = snprintf(b, PATH_MAX, "%s/%s", t->dir, rel);
    cr_assert(n > 0 && n < PATH_MAX);
    return b;
}

/* ---- child processes -------------------------------------------------------- */

void nbdt_spawn(nbdt_proc_t *p, const char *const argv[])
{
    int fds[2];
    cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    int rc = posix_spawnp(&p->pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    cr_assert_eq(rc, 0, "cannot start %s: %s", argv[0], strerror(rc));
    p->fd = fds[0];
}

int nbdt_wait(nbdt_proc_t *p, char *out, size_t cap)
{
    size_t len = 0;
    char sink[4096];
    for (;;) {
        char *dst = len + 1 < cap ? out + len : sink;
        size_t room = len + 1 < cap ? cap - 1 - len : sizeof sink;
        ssize_t n = read(p->fd, dst, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (dst != sink)
            len += (size_t)n;
    }
    if (cap > 0)
        out[len] = '\0';
    close(p->fd);
    int status;
    while (waitpid(p->pid, &status, 0) < 0)
        cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int nbdt_run(char *out, size_t cap, const char *const argv[])
{
    nbdt_proc_t p;
    nbdt_spawn(&p, argv);
    return nbdt_wait(&p, out, cap);
}

void nbdt_need(const char *program, const char *package)
{
    char out[256];
    int rc = NBDT_RUN(out, "sh", "-c", "command -v \"$0\"", program);
    cr_assert_eq(rc, 0, "%s is not installed: it comes with the Debian package %s", program, package);
}

void nbdt_assert_serving(const nbdt_server_t *t, const char *name)
{
    char out[4096];
    int rc = NBDT_RUN(out, "qemu-io", "-f", "raw", "-r", nbdt_uri(t, name), "-c", "read 0 4k");
    cr_assert_eq(rc, 0, "the server stopped serving: qemu-io read exited %d:\n%s", rc, out);
    cr_assert(strstr(out, "read 4096/4096 bytes at offset 0") != NULL, "qemu-io said:\n%s", out);
}

/* ---- files ------------------------------------------------------------------ */

bool nbdt_files_equal(const char *a, const char *b)
{
    off_t sa = tmt_file_size(a), sb = tmt_file_size(b);
    if (sa != sb)
        return false;
    static uint8_t ba[1 << 20], bb[1 << 20];
    for (off_t off = 0; off < sa; off += (off_t)sizeof ba) {
        size_t n = (size_t)(sa - off) < sizeof ba ? (size_t)(sa - off) : sizeof ba;
        tmt_file_read(a, off, ba, n);
        tmt_file_read(b, off, bb, n);
        if (memcmp(ba, bb, n) != 0)
            return false;
    }
    return true;
}

bool nbdt_file_all(const char *path, uint64_t off, size_t len, uint8_t byte)
{
    uint8_t *buf = malloc(len);
    cr_assert_not_null(buf);
    tmt_file_read(path, (off_t)off, buf, len);
    bool ok = true;
    for (size_t i = 0; i < len && ok; i++)
        ok = buf[i] == byte;
    free(buf);
    return ok;
}

/* ---- raw client -------------------------------------------------------------- */

int nbdt_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {.tv_sec = NBDT_IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    return fd;
}

int nbdt_local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

void nbdt_send(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        cr_assert_gt(k, 0, "send: %s", strerror(errno));
        b += k;
        n -= (size_t)k;
    }
}

bool nbdt_recv(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t k = recv(fd, b, n, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            cr_assert_fail("no answer from the server within %d s", NBDT_IO_TIMEOUT_S);
        if (k == 0 || (k < 0 && errno == ECONNRESET))
            return false;
        cr_assert_gt(k, 0, "recv: %s", strerror(errno));
        b += k;
        n -= (size_t)k;
    }
    return true;
}

bool nbdt_at_eof(int fd)
{
    uint8_t b;
    return !nbdt_recv(fd, &b, 1);
}

void nbdt_handshake(int fd, uint32_t client_flags)
{
    uint8_t g[NBD_GREETING_LEN], f[4];
    cr_assert(nbdt_recv(fd, g, sizeof g), "no greeting");
    cr_assert_eq(tm_get_be64(g), NBD_MAGIC);
    cr_assert_eq(tm_get_be64(g + 8), NBD_IHAVEOPT);
    cr_assert_eq(tm_get_be16(g + 16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    tm_put_be32(f, client_flags);
    nbdt_send(fd, f, sizeof f);
}

void nbdt_send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t h[NBD_OPT_HDR_LEN];
    tm_put_be64(h, NBD_IHAVEOPT);
    tm_put_be32(h + 8, opt);
    tm_put_be32(h + 12, len);
    nbdt_send(fd, h, sizeof h);
    if (data != NULL && len > 0)
        nbdt_send(fd, data, len);
}

bool nbdt_recv_opt_reply(int fd, nbdt_opt_reply_t *r)
{
    uint8_t h[NBD_OPT_REPLY_HDR_LEN];
    if (!nbdt_recv(fd, h, sizeof h))
        return false;
    cr_assert_eq(tm_get_be64(h), NBD_REP_MAGIC);
    r->opt = tm_get_be32(h + 8);
    r->type = tm_get_be32(h + 12);
    r->len = tm_get_be32(h + 16);
    cr_assert_lt(r->len, sizeof r->data, "option reply of %u bytes", r->len);
    cr_assert(nbdt_recv(fd, r->data, r->len));
    r->data[r->len] = 0;
    return true;
}

size_t nbdt_go_data(uint8_t *out, const char *name, const uint16_t *infos, uint16_t ninfo)
{
    uint32_t nlen = (uint32_t)strlen(name);
    tm_put_be32(out, nlen);
    memcpy(out + 4, name, nlen);
    tm_put_be16(out + 4 + nlen, ninfo);
    for (uint16_t i = 0; i < ninfo; i++)
        tm_put_be16(out + 6 + nlen + 2 * i, infos[i]);
    return 6 + nlen + 2 * (size_t)ninfo;
}

uint16_t nbdt_go(int fd, const char *name, uint64_t *size)
{
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint8_t data[NBD_MAX_NAME + 16];
    size_t len = nbdt_go_data(data, name, NULL, 0);
    nbdt_send_opt(fd, NBD_OPT_GO, data, (uint32_t)len);
    uint16_t tflags = 0;
    bool have_export = false;
    nbdt_opt_reply_t r;
    for (;;) {
        cr_assert(nbdt_recv_opt_reply(fd, &r), "connection closed during NBD_OPT_GO");
        cr_assert_eq(r.opt, NBD_OPT_GO);
        if (r.type == NBD_REP_ACK)
            break;
        cr_assert_eq(r.type, NBD_REP_INFO, "NBD_OPT_GO '%s' refused (0x%x): %s", name, r.type, (char *)r.data);
        if (tm_get_be16(r.data) == NBD_INFO_EXPORT) {
            cr_assert_eq(r.len, NBD_INFO_EXPORT_LEN);
            if (size)
                *size = tm_get_be64(r.data + 2);
            tflags = tm_get_be16(r.data + 10);
            have_export = true;
        }
    }
    cr_assert(have_export, "no NBD_INFO_EXPORT before NBD_REP_ACK");
    return tflags;
}

int nbdt_open(int port, const char *name, uint64_t *size, uint16_t *tflags)
{
    int fd = nbdt_connect(port);
    uint16_t f = nbdt_go(fd, name, size);
    if (tflags)
        *tflags = f;
    return fd;
}

void nbdt_send_req(int fd, uint16_t flags, uint16_t type, uint64_t handle, uint64_t off, uint32_t len)
{
    uint8_t h[NBD_REQ_HDR_LEN];
    tm_put_be32(h, NBD_REQUEST_MAGIC);
    tm_put_be16(h + 4, flags);
    tm_put_be16(h + 6, type);
    tm_put_be64(h + 8, handle);
    tm_put_be64(h + 16, off);
    tm_put_be32(h + 24, len);
    nbdt_send(fd, h, sizeof h);
}

bool nbdt_recv_reply(int fd, uint32_t *error, uint64_t *handle)
{
    uint8_t h[NBD_REPLY_HDR_LEN];
    if (!nbdt_recv(fd, h, sizeof h))
        return false;
    cr_assert_eq(tm_get_be32(h), NBD_SIMPLE_REPLY_MAGIC);
    *error = tm_get_be32(h + 4);
    *handle = tm_get_be64(h + 8);
    return true;
}

uint32_t nbdt_roundtrip(int fd, uint16_t flags, uint16_t type, uint64_t off, uint32_t len, const void *wdata,
                        void *rbuf)
{
    static uint64_t next_handle = 0x1000;
    uint64_t handle = next_handle++;
    nbdt_send_req(fd, flags, type, handle, off, len);
    if (type == NBD_CMD_WRITE && wdata != NULL)
        nbdt_send(fd, wdata, len);
    uint32_t error;
    uint64_t got;
    cr_assert(nbdt_recv_reply(fd, &error, &got), "connection closed instead of a reply to %s",
              nbd_proto_cmd_name(type));
    cr_assert_eq(got, handle);
    if (type == NBD_CMD_READ && error == 0 && len > 0) {
        cr_assert_not_null(rbuf);
        cr_assert(nbdt_recv(fd, rbuf, len), "connection closed during READ data");
    }
    return error;
}
