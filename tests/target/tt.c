/* Target test helpers; the contracts are in tt.h. */
#include "tt.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"

uint64_t tt_seed(uint64_t def)
{
    uint64_t s = tmt_env_u64("TIDEMARK_TARGET_SEED", 0);
    if (!s)
        s = def;
    fprintf(stderr, "target test seed %#llx (TIDEMARK_TARGET_SEED)\n", (unsigned long long)s);
    return s;
}

static void tt__open_journal(tt_t *t)
{
    jnl_options_t jo = {.segment_size = t->segment_size,
                        .max_record = t->segment_size ? (uint32_t)(t->segment_size - 8192) : 0};
    cr_assert_eq(jnl_open(t->jdir, &jo, &t->j), 0);
}

static void tt__open_points(tt_t *t)
{
    char err[256];
    pts_options_t o = {.cadence_ms = 1000, .base_dir = t->bdir, .no_auto_retain = true, .retire_journal = t->retire};
    int rc = pts_open(t->idir, t->j, &o, &t->p, err, sizeof err);
    cr_assert_eq(rc, 0, "pts_open: %s", err);
}

void tt_init(tt_t *t, const char *tag, uint64_t seed, unsigned nbatches, unsigned max_entries)
{
    tt_init_ex(t, tag, seed, nbatches, max_entries, 0, false);
}

void tt_init_ex(tt_t *t, const char *tag, uint64_t seed, unsigned nbatches, unsigned max_entries,
                uint64_t segment_size, bool retire)
{
    memset(t, 0, sizeof *t);
    t->segment_size = segment_size;
    t->retire = retire;
    signal(SIGPIPE, SIG_IGN);
    tmt_mkdtemp(t->dir, tag);
    snprintf(t->jdir, sizeof t->jdir, "%s/journal", t->dir);
    snprintf(t->idir, sizeof t->idir, "%s/index", t->dir);
    snprintf(t->bdir, sizeof t->bdir, "%s/base", t->dir);
    tt__open_journal(t);
    /* Ten minutes ago: every batch time is in the past for @TIME, and
     * younger than an hour, so thinning would keep every point anyway. */
    pm_init(&t->m, seed, "web1", tm_now_ns() - 600ull * 1000000000ull, TT_STEP_NS);
    pm_append_disks(&t->m, t->j);
    for (unsigned i = 0; i < nbatches; i++)
        pm_append_batch(&t->m, t->j, max_entries);
    tt__open_points(t);
    cr_assert_eq(pts_sync(t->p, 30000), 0);
    /* the idle cut of the last point follows catching up */
    cr_assert_eq(pts_sync(t->p, 30000), 0);
}

static void tt__thread(void *arg)
{
    tt_t *t = arg;
    uv_run(&t->loop, UV_RUN_DEFAULT);
}

static void tt__stopped_call(uv_handle_t *h)
{
    tt_t *t = h->data;
    uv_close((uv_handle_t *)&t->stop, NULL);
}

static void tt__stopped(void *arg)
{
    tt_t *t = arg;
    uv_close((uv_handle_t *)&t->call, tt__stopped_call);
}

static void tt__on_stop(uv_async_t *a)
{
    tt_t *t = a->data;
    tgt_exports_stop(t->x, tt__stopped, t);
    t->x = NULL;
}

static void tt__on_call(uv_async_t *a)
{
    tt_t *t = a->data;
    t->call_fn(t);
}

/* Run fn on the loop's thread; it posts call_done when finished. */
static void tt__call(tt_t *t, void (*fn)(tt_t *t))
{
    cr_assert(t->running);
    t->call_fn = fn;
    t->call_rc = 0;
    t->call_seq = 0;
    t->call_msg[0] = '\0';
    cr_assert_eq(uv_async_send(&t->call), 0);
    uv_sem_wait(&t->call_done);
}

static void tt__test_started(void *arg, int status, uint64_t seq, const char *msg)
{
    tt_t *t = arg;
    t->call_rc = status;
    t->call_seq = seq;
    snprintf(t->call_msg, sizeof t->call_msg, "%s", msg);
    uv_sem_post(&t->call_done);
}

static void tt__do_test_start(tt_t *t)
{
    int rc = tgt_test_start(t->x, t->call_machine, t->call_selector, tt_path(t, "test"), tt__test_started, t,
                            t->call_msg, sizeof t->call_msg);
    if (rc) {
        t->call_rc = rc;
        uv_sem_post(&t->call_done);
    }
}

static void tt__do_test_cleanup(tt_t *t)
{
    t->call_rc = tgt_test_cleanup(t->x, t->call_machine, t->call_msg, sizeof t->call_msg);
    uv_sem_post(&t->call_done);
}

int tt_test_start(tt_t *t, const char *machine, const char *selector, uint64_t *seq, char *msg, size_t len)
{
    t->call_machine = machine;
    t->call_selector = selector;
    tt__call(t, tt__do_test_start);
    if (seq)
        *seq = t->call_seq;
    if (len)
        snprintf(msg, len, "%s", t->call_msg);
    return t->call_rc;
}

int tt_test_cleanup(tt_t *t, const char *machine, char *msg, size_t len)
{
    t->call_machine = machine;
    tt__call(t, tt__do_test_cleanup);
    if (len)
        snprintf(msg, len, "%s", t->call_msg);
    return t->call_rc;
}

static void tt__do_failover_start(tt_t *t)
{
    int rc = tgt_failover_start(t->x, t->call_machine, t->call_in, tt_path(t, "failover"), t->call_flag,
                                tt__test_started, t, t->call_msg, sizeof t->call_msg);
    if (rc) {
        t->call_rc = rc;
        uv_sem_post(&t->call_done);
    }
}

static void tt__do_failover_stop(tt_t *t)
{
    t->call_rc = tgt_failover_stop(t->x, t->call_machine, t->call_flag, t->call_msg, sizeof t->call_msg);
    uv_sem_post(&t->call_done);
}

static void tt__do_failover_point(tt_t *t)
{
    t->call_rc = tgt_failover_point(t->x, t->call_machine, &t->call_seq);
    uv_sem_post(&t->call_done);
}

static void tt__do_failover_progress(tt_t *t)
{
    t->call_rc = tgt_failover_progress(t->x, t->call_machine, &t->call_seq, &t->call_seq2);
    uv_sem_post(&t->call_done);
}

static void tt__committed(void *arg, int status, uint64_t seq, const char *msg)
{
    tt_t *t = arg;
    (void)seq; /* always 0 */
    t->commit_rc = status;
    snprintf(t->commit_msg, sizeof t->commit_msg, "%s", msg);
    uv_sem_post(&t->commit_done);
}

static void tt__do_failover_commit(tt_t *t)
{
    t->call_rc = tgt_failover_commit(t->x, t->call_machine, tt__committed, t, t->call_msg, sizeof t->call_msg);
    if (t->call_rc == 0 && t->call_flag) {
        char msg[256];
        t->call_seq = (uint64_t)(int64_t)tgt_failover_stop(t->x, t->call_machine, true, msg, sizeof msg);
    }
    uv_sem_post(&t->call_done);
}

int tt_failover_start(tt_t *t, const char *machine, uint64_t seq, bool keep, char *msg, size_t len)
{
    t->call_machine = machine;
    t->call_in = seq;
    t->call_flag = keep;
    tt__call(t, tt__do_failover_start);
    if (len)
        snprintf(msg, len, "%s", t->call_msg);
    if (t->call_rc == 0)
        cr_assert_eq(t->call_seq, seq, "the failover started at %llu, not %llu", (unsigned long long)t->call_seq,
                     (unsigned long long)seq);
    return t->call_rc;
}

int tt_failover_stop(tt_t *t, const char *machine, bool remove, char *msg, size_t len)
{
    t->call_machine = machine;
    t->call_flag = remove;
    tt__call(t, tt__do_failover_stop);
    if (len)
        snprintf(msg, len, "%s", t->call_msg);
    return t->call_rc;
}

int tt_failover_point(tt_t *t, const char *machine, uint64_t *seq)
{
    t->call_machine = machine;
    tt__call(t, tt__do_failover_point);
    *seq = t->call_seq;
    return t->call_rc;
}

int tt_failover_progress(tt_t *t, const char *machine, uint64_t *done, uint64_t *total)
{
    t->call_machine = machine;
    tt__call(t, tt__do_failover_progress);
    *done = t->call_seq;
    *total = t->call_seq2;
    return t->call_rc;
}

int tt_failover_commit(tt_t *t, const char *machine, bool then_stop, int *stop_rc, char *msg, size_t len)
{
    t->call_machine = machine;
    t->call_flag = then_stop;
    tt__call(t, tt__do_failover_commit);
    if (stop_rc)
        *stop_rc = (int)(int64_t)t->call_seq;
    if (len)
        snprintf(msg, len, "%s", t->call_msg);
    return t->call_rc;
}

int tt_failover_commit_wait(tt_t *t, char *msg, size_t len)
{
    uv_sem_wait(&t->commit_done);
    if (len)
        snprintf(msg, len, "%s", t->commit_msg);
    return t->commit_rc;
}

void tt_reopen(tt_t *t, bool wipe)
{
    cr_assert(!t->running, "tt_reopen with the exports running");
    pts_close(t->p);
    t->p = NULL;
    jnl_destroy(t->j);
    t->j = NULL;
    if (wipe) {
        /* new folders: nothing of the old journal, index or base is seen */
        t->reopens++;
        snprintf(t->jdir, sizeof t->jdir, "%s/journal-%u", t->dir, t->reopens);
        snprintf(t->idir, sizeof t->idir, "%s/index-%u", t->dir, t->reopens);
        snprintf(t->bdir, sizeof t->bdir, "%s/base-%u", t->dir, t->reopens);
    }
    tt__open_journal(t);
    tt__open_points(t);
    cr_assert_eq(pts_sync(t->p, 30000), 0);
}

void tt_start(tt_t *t)
{
    cr_assert_eq(uv_loop_init(&t->loop), 0);
    char err[256];
    int rc = tgt_exports_start(&t->loop, t->p, t->j, "127.0.0.1:0", &t->x, err, sizeof err);
    cr_assert_eq(rc, 0, "tgt_exports_start: %s", err);
    t->port = tgt_exports_port(t->x);
    cr_assert_gt(t->port, 0);
    char addr[64], want[64];
    tgt_exports_address(t->x, addr, sizeof addr);
    snprintf(want, sizeof want, "127.0.0.1:%d", t->port);
    cr_assert_str_eq(addr, want);
    cr_assert_eq(uv_async_init(&t->loop, &t->stop, tt__on_stop), 0);
    t->stop.data = t;
    cr_assert_eq(uv_async_init(&t->loop, &t->call, tt__on_call), 0);
    t->call.data = t;
    cr_assert_eq(uv_sem_init(&t->call_done, 0), 0);
    cr_assert_eq(uv_sem_init(&t->commit_done, 0), 0);
    /* From here on only the thread touches the loop. */
    cr_assert_eq(uv_thread_create(&t->thread, tt__thread, t), 0);
    t->running = true;
}

void tt_stop(tt_t *t)
{
    if (!t->running)
        return;
    t->running = false;
    cr_assert_eq(uv_async_send(&t->stop), 0);
    cr_assert_eq(uv_thread_join(&t->thread), 0);
    int rc = uv_loop_close(&t->loop);
    cr_assert_eq(rc, 0, "uv_loop_close: %s (a handle or request was left open)", uv_strerror(rc));
    uv_sem_destroy(&t->call_done);
    uv_sem_destroy(&t->commit_done);
}

void tt_fini(tt_t *t)
{
    tt_stop(t);
    pts_close(t->p);
    jnl_destroy(t->j);
    pm_free(&t->m);
    tmt_rmtree(t->dir);
}

const char *tt_uri(const tt_t *t, const char *name)
{
    static char bufs[8][PATH_MAX];
    static unsigned next;
    char *b = bufs[next++ % 8];
    int n = snprintf(b, PATH_MAX, "nbd://127.0.0.1:%d/", t->port);
    cr_assert(n > 0);
    /* What RFC 3986 allows in a path as it is; the rest (':' too, which
     * some parsers take for a port) as %XX. */
    static const char keep[] = "-._~/@!$&'()*;=";
    for (const char *c = name; *c; c++) {
        cr_assert_lt((size_t)n + 4, (size_t)PATH_MAX);
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr(keep, *c))
            b[n++] = *c;
        else
            n += snprintf(b + n, PATH_MAX - (size_t)n, "%%%02X", (unsigned char)*c);
    }
    b[n] = '\0';
    return b;
}

const char *tt_path(const tt_t *t, const char *rel)
{
    static char bufs[8][PATH_MAX];
    static unsigned next;
    char *b = bufs[next++ % 8];
    int n = snprintf(b, PATH_MAX, "%s/%s", t->dir, rel);
    cr_assert(n > 0 && n < PATH_MAX);
    return b;
}

uint64_t tt_seq_of(tt_t *t, const char *selector)
{
    pts_point_t pt;
    char why[256];
    int rc = pts_resolve(t->p, "web1", selector, &pt, why, sizeof why);
    cr_assert_eq(rc, 0, "pts_resolve(%s): %s: %s", selector, tmt_errname(rc), why);
    return pt.seq;
}

void tt_time_selector(const tt_t *t, size_t b, char *out, size_t len)
{
    uint64_t ns = t->m.batches[b].recv_ns + TT_STEP_NS / 2;
    time_t secs = (time_t)(ns / 1000000000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, len, "@%04d-%02d-%02dT%02d:%02d:%02d.%09lluZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned long long)(ns % 1000000000u));
}

uint64_t tt_middle_point(tt_t *t)
{
    pts_point_t *all;
    size_t n;
    cr_assert_eq(pts_points(t->p, "web1", NULL, &all, &n), 0);
    cr_assert_gt(n, 2, "the workload made %zu points", n);
    uint64_t seq = all[n / 2].seq;
    tm_free(all);
    return seq;
}

void tt_assert_disk_file(const tt_t *t, const char *path, unsigned disk, uint64_t seq)
{
    uint64_t size = t->m.disks[disk].size;
    cr_assert_eq((uint64_t)tmt_file_size(path), size, "%s holds %lld bytes, disk%u %llu", path,
                 (long long)tmt_file_size(path), disk, (unsigned long long)size);
    uint8_t *want = malloc(size), *got = malloc(size);
    cr_assert(want && got);
    pm_disk_at(&t->m, disk, seq, want);
    tmt_file_read(path, 0, got, size);
    for (uint64_t i = 0; i < size; i++)
        if (got[i] != want[i])
            cr_assert_fail("%s: disk%u at point %llu differs from the model at byte %llu (seed %#llx)", path, disk,
                           (unsigned long long)seq, (unsigned long long)i, (unsigned long long)t->m.seed);
    free(want);
    free(got);
}

void tt_convert_and_check(tt_t *t, const char *name, unsigned disk, uint64_t seq, const char *out)
{
    char text[8192];
    const char *path = tt_path(t, out);
    int rc = NBDT_RUN(text, "qemu-img", "convert", "-f", "raw", "-O", "raw", tt_uri(t, name), path);
    cr_assert_eq(rc, 0, "qemu-img convert %s exited %d:\n%s", tt_uri(t, name), rc, text);
    tt_assert_disk_file(t, path, disk, seq);
}

uint32_t tt_go(int fd, const char *name, uint64_t *size, uint16_t *tflags, char *msg, size_t len)
{
    uint8_t data[NBD_MAX_NAME + 16];
    size_t dl = nbdt_go_data(data, name, NULL, 0);
    nbdt_send_opt(fd, NBD_OPT_GO, data, (uint32_t)dl);
    if (len)
        msg[0] = '\0';
    nbdt_opt_reply_t r;
    for (;;) {
        cr_assert(nbdt_recv_opt_reply(fd, &r), "connection closed during NBD_OPT_GO '%s'", name);
        cr_assert_eq(r.opt, NBD_OPT_GO);
        if (r.type != NBD_REP_INFO) {
            if (len)
                snprintf(msg, len, "%s", (const char *)r.data);
            return r.type;
        }
        if (tm_get_be16(r.data) == NBD_INFO_EXPORT) {
            if (size)
                *size = tm_get_be64(r.data + 2);
            if (tflags)
                *tflags = tm_get_be16(r.data + 10);
        }
    }
}
