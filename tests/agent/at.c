#include "tests/agent/at.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "ingest/record.h"
#include "journal/journal.h"
#include "wire/msg.h"

#ifndef TIDEMARK_BIN
#error "TIDEMARK_BIN must name the built tidemark binary"
#endif

char at_dir[PATH_MAX];

#define AT_MAX_LIVE 8
static at_child_t *live[AT_MAX_LIVE];

void at_setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(at_dir, sizeof at_dir, "%s/tidemark-agent-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(at_dir), "mkdtemp: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* c's process was reaped: the test may let c go out of scope (a copy of
 * it kept by value, a helper's local), so teardown must not look at it. */
static void at__forget(at_child_t *c)
{
    for (unsigned i = 0; i < AT_MAX_LIVE; i++)
        if (live[i] == c)
            live[i] = NULL;
}

void at_teardown(void)
{
    for (unsigned i = 0; i < AT_MAX_LIVE; i++) {
        pid_t pid = live[i] ? live[i]->pid : 0;
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            live[i]->pid = 0;
        }
        live[i] = NULL;
    }
    if (at_dir[0] && !getenv("TIDEMARK_KEEP_TMP"))
        nftw(at_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

const char *at_path(const char *rel)
{
    static char bufs[8][PATH_MAX + 64];
    static unsigned next;
    char *b = bufs[next++ % 8];
    int n = snprintf(b, sizeof bufs[0], "%s/%s", at_dir, rel);
    cr_assert(n > 0 && (size_t)n < sizeof bufs[0], "path too long");
    return b;
}

void at_spawn(at_child_t *c, const char *const *args)
{
    at_spawn_in(c, args, NULL);
}

void at_spawn_in(at_child_t *c, const char *const *args, int *in_fd)
{
    int outp[2], errp[2], inp[2] = {-1, -1};
    const char *argv[40];
    unsigned n = 0;
    bool external = args[0][0] == '/' || strncmp(args[0], "qemu-", 5) == 0 || strcmp(args[0], "nbdcopy") == 0;
    memset(c, 0, sizeof *c);
    if (!external)
        argv[n++] = "tidemark";
    for (unsigned i = 0; args[i]; i++) {
        cr_assert_lt(n, 38);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    cr_assert_eq(pipe2(outp, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(errp, O_CLOEXEC), 0);
    if (in_fd)
        cr_assert_eq(pipe2(inp, O_CLOEXEC), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigaction(SIGPIPE, &dfl, NULL);
        if (dup2(outp[1], 1) < 0 || dup2(errp[1], 2) < 0 || (in_fd && dup2(inp[0], 0) < 0))
            _exit(127);
        if (external)
            execvp(argv[0], (char *const *)argv);
        else
            execv(TIDEMARK_BIN, (char *const *)argv);
        _exit(127);
    }
    close(outp[1]);
    close(errp[1]);
    if (in_fd) {
        close(inp[0]);
        *in_fd = inp[1];
    }
    c->pid = pid;
    c->out_fd = outp[0];
    c->err_fd = errp[0];
    c->out = tm_calloc(1, 1);
    c->err = tm_calloc(1, 1);
    for (unsigned i = 0; i < AT_MAX_LIVE; i++)
        if (!live[i] || live[i] == c) {
            live[i] = c;
            break;
        }
}

static void drain(int *fd, char **buf, size_t *len)
{
    char chunk[8192];
    ssize_t r = read(*fd, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR)
        return;
    if (r <= 0) {
        close(*fd);
        *fd = -1;
        return;
    }
    char *g = tm_realloc(*buf, *len + (size_t)r + 1);
    cr_assert_not_null(g);
    memcpy(g + *len, chunk, (size_t)r);
    *len += (size_t)r;
    g[*len] = '\0';
    *buf = g;
}

static int64_t now_ms(void)
{
    return (int64_t)(tm_mono_ns() / 1000000);
}

bool at_wait(at_child_t *c, bool err, const char *needle, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    for (;;) {
        if (needle && strstr(err ? c->err : c->out, needle))
            return true;
        if (c->out_fd < 0 && c->err_fd < 0)
            return false;
        int left = (int)(end - now_ms());
        if (left <= 0)
            return false;
        struct pollfd p[2] = {{.fd = c->out_fd, .events = POLLIN}, {.fd = c->err_fd, .events = POLLIN}};
        int r = poll(p, 2, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        if (p[0].revents)
            drain(&c->out_fd, &c->out, &c->out_len);
        if (p[1].revents)
            drain(&c->err_fd, &c->err, &c->err_len);
    }
}

bool at_has(at_child_t *c, bool err, const char *needle)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = c->out_fd, .events = POLLIN}, {.fd = c->err_fd, .events = POLLIN}};
        int r = poll(p, 2, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (p[0].revents)
            drain(&c->out_fd, &c->out, &c->out_len);
        if (p[1].revents)
            drain(&c->err_fd, &c->err, &c->err_len);
    }
    return strstr(err ? c->err : c->out, needle) != NULL;
}

int at_finish(at_child_t *c, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    int status = 0;
    if (c->pid <= 0) /* reaped already (at_kill): waitpid(0) would take some other child */
        return c->status;
    at_wait(c, false, NULL, timeout_ms);
    for (;;) {
        pid_t r = waitpid(c->pid, &status, WNOHANG);
        if (r == c->pid)
            break;
        if (now_ms() > end) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &status, 0);
            c->pid = 0;
            at__forget(c);
            cr_assert_fail("child did not exit in %d ms; stdout:\n%s\nstderr:\n%s", timeout_ms, c->out, c->err);
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL); /* the pipes are closed; only the exit is left */
    }
    c->pid = 0;
    at__forget(c);
    c->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return c->status;
}

void at_kill(at_child_t *c, int sig)
{
    if (c->pid <= 0)
        return;
    int status = 0;
    kill(c->pid, sig);
    waitpid(c->pid, &status, 0);
    c->pid = 0;
    c->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    at__forget(c);
}

void at_child_free(at_child_t *c)
{
    at__forget(c);
    if (c->out_fd >= 0)
        close(c->out_fd);
    if (c->err_fd >= 0)
        close(c->err_fd);
    tm_free(c->out);
    tm_free(c->err);
    memset(c, 0, sizeof *c);
    c->out_fd = c->err_fd = -1;
}

void at_machine_add(const char *data, const char *name, const char *secret_path)
{
    at_child_t c;
    at_spawn(&c, (const char *[]){"machine", "add", name, "--data", data, NULL});
    int code = at_finish(&c, 30000);
    cr_assert_eq(code, 0, "machine add: %s", c.err);
    char hex[65] = "";
    const char *p = c.out;
    while (*p && strspn(p, "0123456789abcdef") < 64)
        p++;
    cr_assert(*p, "no secret printed: %s", c.out);
    memcpy(hex, p, 64);
    FILE *f = fopen(secret_path, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", hex);
    fclose(f);
    at_child_free(&c);
}

void at_serve(at_child_t *c, const char *data, const char *addr, char *out)
{
    at_spawn(c, (const char *[]){"serve", "--data", data, "--agents", addr, "--api", "127.0.0.1:0", "--nbd",
                                 "127.0.0.1:0", NULL});
    cr_assert(at_wait(c, false, "serving", 30000), "serve did not start:\n%s\n%s", c->out, c->err);
    const char *p = strstr(c->out, "agents on ");
    cr_assert_not_null(p, "%s", c->out);
    p += strlen("agents on ");
    size_t n = strcspn(p, " \n");
    cr_assert_lt(n, 64);
    memcpy(out, p, n);
    out[n] = '\0';
}

typedef struct at_one {
    const char *machine;
    at_rec_fn fn;
    void *arg;
} at_one_t;

static void at__one(const char *machine, uint64_t seq, const wire_entry_t *e, void *arg)
{
    at_one_t *o = arg;
    if (strcmp(machine, o->machine) == 0)
        o->fn(seq, e, o->arg);
}

void at_walk_journal(const char *data, const char *machine, at_rec_fn fn, void *arg)
{
    at_one_t o = {machine, fn, arg};
    at_walk_journal_all(data, at__one, &o);
}

void at_walk_journal_all(const char *data, at_mrec_fn fn, void *arg)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/journal", data);
    jnl_options_t o = {.read_only = true};
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    cr_assert_eq(rc, 0, "jnl_open %s: %s", dir, tm_strerror(rc));
    jnl_reader_t *r = NULL;
    cr_assert_eq(jnl_reader_open(j, 0, &r), 0);
    wire_records_t *recs = tm_malloc(sizeof *recs);
    uint8_t *scratch = tm_malloc(WIRE_MAX_BATCH_DATA);
    cr_assert(recs && scratch);
    jnl_record_t rec;
    while ((rc = jnl_reader_next(r, &rec)) == 0) {
        if (rec.type != INGEST_REC_BATCH)
            continue;
        ingest_batch_rec_t b;
        cr_assert_eq(ingest_rec_batch_parse(rec.data, rec.len, &b), 0, "batch at lsn %llu",
                     (unsigned long long)rec.lsn);
        char reason[160];
        rc = wire_dec_records(b.body, b.body_len, recs, scratch, reason, sizeof reason);
        cr_assert_eq(rc, 0, "lsn %llu: %s", (unsigned long long)rec.lsn, reason);
        for (unsigned i = 0; i < recs->count; i++)
            fn(b.machine, recs->first_seq + i, &recs->entries[i], arg);
    }
    cr_assert_eq(rc, -EAGAIN, "reader: %s", tm_strerror(rc));
    tm_free(scratch);
    tm_free(recs);
    jnl_reader_close(r);
    jnl_destroy(j);
}

typedef struct replay_check {
    const agent_workload_t *w;
    agent_wl_gen_t gen;
    uint64_t next;
    uint8_t *buf;
} replay_check_t;

static void check_replay_rec(uint64_t seq, const wire_entry_t *e, void *arg)
{
    replay_check_t *c = arg;
    cr_assert_eq(seq, c->next, "sequence %llu found where %llu was due (a gap or a duplicate)",
                 (unsigned long long)seq, (unsigned long long)c->next);
    wire_entry_t want;
    char name[WIRE_MAX_NAME + 1];
    agent_workload_record(c->w, &c->gen, seq, &want, c->buf, name);
    cr_assert_eq(e->kind, want.kind, "seq %llu kind", (unsigned long long)seq);
    cr_assert_eq(e->disk, want.disk, "seq %llu disk", (unsigned long long)seq);
    cr_assert_eq(e->offset, want.offset, "seq %llu offset", (unsigned long long)seq);
    cr_assert_eq(e->length, want.length, "seq %llu length", (unsigned long long)seq);
    cr_assert_eq(e->id, want.id, "seq %llu id", (unsigned long long)seq);
    if (want.length) /* SYNCED and flushes have no data (NULL) */
        cr_assert_eq(memcmp(e->data, want.data, want.length), 0, "seq %llu content", (unsigned long long)seq);
    c->next++;
}

void at_check_replay_journal(const char *data, const char *machine, const agent_workload_t *w, uint64_t last)
{
    replay_check_t c = {.w = w, .next = 1, .buf = tm_malloc(w->bs_max)};
    at_walk_journal(data, machine, check_replay_rec, &c);
    cr_assert_eq(c.next, last + 1, "the journal ends at sequence %llu, expected %llu",
                 (unsigned long long)c.next - 1, (unsigned long long)last);
    tm_free(c.buf);
}

typedef struct tap_check {
    const at_write_t *want;
    unsigned n, i;
    uint64_t next;
} tap_check_t;

static void check_tap_rec(uint64_t seq, const wire_entry_t *e, void *arg)
{
    tap_check_t *c = arg;
    cr_assert_eq(seq, c->next, "sequence %llu where %llu was due", (unsigned long long)seq,
                 (unsigned long long)c->next);
    c->next++;
    if (e->kind == WIRE_R_FLUSH || e->kind == WIRE_R_SYNCED || e->kind == WIRE_R_RESYNC)
        return;
    cr_assert_lt(c->i, c->n, "an extra record at seq %llu: kind %u offset %llu length %u",
                 (unsigned long long)seq, e->kind, (unsigned long long)e->offset, e->length);
    const at_write_t *w = &c->want[c->i++];
    cr_assert_eq(e->kind, w->kind, "seq %llu kind", (unsigned long long)seq);
    cr_assert_eq(e->disk, 0);
    cr_assert_eq(e->offset, w->offset, "seq %llu offset", (unsigned long long)seq);
    cr_assert_eq(e->length, w->length, "seq %llu length", (unsigned long long)seq);
    if (e->kind == WIRE_R_WRITE)
        for (uint32_t k = 0; k < e->length; k++)
            cr_assert_eq(e->data[k], w->fill, "seq %llu byte %u", (unsigned long long)seq, k);
}

void at_check_tap_journal(const char *data, const char *machine, const at_write_t *want, unsigned n)
{
    tap_check_t c = {.want = want, .n = n, .next = 1};
    at_walk_journal(data, machine, check_tap_rec, &c);
    cr_assert_eq(c.i, n, "found %u of the %u writes", c.i, n);
}

void at_apply(uint8_t *disk, uint64_t size, const wire_entry_t *e)
{
    if (e->kind != WIRE_R_WRITE && e->kind != WIRE_R_ZERO && e->kind != WIRE_R_TRIM)
        return;
    cr_assert(e->disk == 0 && e->offset <= size && e->length <= size - e->offset,
              "a record past the disk: disk %u, %u bytes at %llu", e->disk, e->length,
              (unsigned long long)e->offset);
    if (e->kind == WIRE_R_WRITE)
        memcpy(disk + e->offset, e->data, e->length);
    else
        memset(disk + e->offset, 0, e->length); /* a trimmed range reads as zeros, as the appliance serves it */
}
