/*
 * The two servers. Tidemark's exports run in this process, as in `tidemark
 * serve`: tgt_exports_start on a libuv loop that a thread of its own runs
 * (everything of the exports happens there; the benchmark talks to them over
 * loopback only). qemu-nbd runs as a child process serving the raw twin;
 * it gets SIGTERM if the benchmark dies first.
 */
#include "bench/target/bt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "base/clock.h"
#include "base/mem.h"
#include "target/export.h"

/* ---- tidemark --------------------------------------------------------- */

struct bt_tidemark {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop;
    tgt_exports_t *x;
    int port;
};

static void bt__loop_thread(void *arg)
{
    bt_tidemark_t *t = arg;
    uv_run(&t->loop, UV_RUN_DEFAULT);
}

static void bt__stopped(void *arg)
{
    bt_tidemark_t *t = arg;
    uv_close((uv_handle_t *)&t->stop, NULL);
}

static void bt__on_stop(uv_async_t *a)
{
    bt_tidemark_t *t = a->data;
    tgt_exports_stop(t->x, bt__stopped, t);
    t->x = NULL;
}

int bt_tidemark_start(pts_t *pts, jnl_t *jnl, bt_tidemark_t **out)
{
    char err[256];
    bt_tidemark_t *t = tm_calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    int rc = uv_loop_init(&t->loop);
    if (rc) {
        fprintf(stderr, "bench_target: uv_loop_init: %s\n", uv_strerror(rc));
        tm_free(t);
        return rc;
    }
    rc = tgt_exports_start(&t->loop, pts, jnl, "127.0.0.1:0", &t->x, err, sizeof err);
    if (rc) {
        fprintf(stderr, "bench_target: tgt_exports_start: %s\n", err);
        /* what was made before the failure closes on the next run */
        uv_run(&t->loop, UV_RUN_DEFAULT);
        uv_loop_close(&t->loop);
        tm_free(t);
        return rc;
    }
    t->port = tgt_exports_port(t->x);
    if ((rc = uv_async_init(&t->loop, &t->stop, bt__on_stop)) == 0) {
        t->stop.data = t;
        rc = uv_thread_create(&t->thread, bt__loop_thread, t);
        if (rc)
            uv_close((uv_handle_t *)&t->stop, NULL);
    }
    if (rc) {
        fprintf(stderr, "bench_target: starting the exports' loop: %s\n", uv_strerror(rc));
        tgt_exports_stop(t->x, NULL, NULL);
        uv_run(&t->loop, UV_RUN_DEFAULT);
        uv_loop_close(&t->loop);
        tm_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int bt_tidemark_port(const bt_tidemark_t *t)
{
    return t->port;
}

void bt_tidemark_stop(bt_tidemark_t *t)
{
    if (!t)
        return;
    uv_async_send(&t->stop);
    uv_thread_join(&t->thread);
    int rc = uv_loop_close(&t->loop);
    if (rc)
        fprintf(stderr, "bench_target: uv_loop_close: %s (a handle was left open)\n", uv_strerror(rc));
    tm_free(t);
}

/* ---- qemu-nbd --------------------------------------------------------- */

#define BT_QEMU_TRIES 3
#define BT_QEMU_READY_MS 10000

/* A port free now (bound to port 0 and released); qemu-nbd binds it next. */
static int bt__free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int rc = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        rc = -errno;
    close(fd);
    return rc ? rc : ntohs(a.sin_port);
}

static pid_t bt__spawn(char *const argv[])
{
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* the child: die with the benchmark, keep stdout clean */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(1);
    int fd = open("/dev/null", O_WRONLY);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        close(fd);
    }
    execvp(argv[0], argv);
    fprintf(stderr, "bench_target: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int bt_qemu_start(const char *raw, const char *name, bt_qemu_t *q)
{
    q->pid = -1;
    q->port = 0;
    for (int attempt = 0; attempt < BT_QEMU_TRIES; attempt++) {
        int port = bt__free_port();
        if (port < 0) {
            fprintf(stderr, "bench_target: finding a free port: %s\n", strerror(-port));
            return port;
        }
        char portstr[16];
        snprintf(portstr, sizeof portstr, "%d", port);
        /* Buffered reads through the page cache from a thread pool, as the
         * exports read the base and the journal (README.md, "qemu-nbd"). */
        char *argv[] = {"qemu-nbd", "--read-only", "--persistent", "--shared=8", "-f", "raw",
                        "--cache=writeback", "--aio=threads", "-x", (char *)name, "-b", "127.0.0.1",
                        "-p", portstr, (char *)raw, NULL};
        pid_t pid = bt__spawn(argv);
        if (pid < 0) {
            fprintf(stderr, "bench_target: fork: %s\n", strerror(errno));
            return -errno;
        }
        /* Ready when it opens the export; it exits if the port was taken
         * in between, and then another port is tried. */
        uint64_t deadline = tm_mono_ns() + (uint64_t)BT_QEMU_READY_MS * 1000000u;
        for (;;) {
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                fprintf(stderr, "bench_target: qemu-nbd on port %d exited (status %d)%s\n", port,
                        WIFEXITED(st) ? WEXITSTATUS(st) : -1, attempt + 1 < BT_QEMU_TRIES ? "; trying again" : "");
                break;
            }
            /* a whole open and a clean disconnect, so it logs nothing */
            char err[256];
            uint64_t size;
            int fd = bt_nbd_open(port, name, &size, err, sizeof err);
            if (fd >= 0) {
                bt_nbd_close(fd);
                q->pid = pid;
                q->port = port;
                return 0;
            }
            if (tm_mono_ns() > deadline) {
                fprintf(stderr, "bench_target: qemu-nbd did not accept connections within %d ms\n",
                        BT_QEMU_READY_MS);
                kill(pid, SIGTERM);
                waitpid(pid, NULL, 0);
                return -ETIMEDOUT;
            }
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return -EADDRINUSE;
}

long bt_qemu_peak_rss_kib(const bt_qemu_t *q)
{
    char path[64], line[256];
    long kib = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)q->pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

void bt_qemu_stop(bt_qemu_t *q)
{
    if (q->pid <= 0)
        return;
    kill(q->pid, SIGTERM);
    while (waitpid(q->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    q->pid = -1;
}
