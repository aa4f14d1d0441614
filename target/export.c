/*
 * The NBD exports of disks at points (export.h): the server's life, names,
 * opens (resolved and pinned on an open thread), listings, and the shared
 * per-point exports. Reads are export_read.c's.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "base/addr.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "target/export_int.h"

/* Longer than any selector (the longest, an RFC 3339 time with nanoseconds
 * and an offset, is under 40 bytes): anything past it is not one. */
#define TGT_MAX_SELECTOR 127u
#define TGT_MSG_LEN 512u

static const char tgt__name_help[] = "use MACHINE/DISK@SELECTOR, e.g. web1/disk0@latest";

typedef struct tgt_open_job {
    tgt_job_t job;
    tgt_exports_t *x;
    nbd_open_t *op;
    char machine[WIRE_MAX_NAME + 1];
    char disk[WIRE_MAX_NAME + 1];
    char selector[TGT_MAX_SELECTOR + 1];
    /* out */
    int rc;
    uint32_t mid;
    uint16_t disk_ix;
    uint64_t size;
    pts_point_t pt;
    char msg[TGT_MSG_LEN];
} tgt_open_job_t;

typedef struct tgt_list_entry {
    char name[2 * WIRE_MAX_NAME + 32];
    char desc[2 * WIRE_MAX_NAME + 160];
} tgt_list_entry_t;

typedef struct tgt_list_job {
    tgt_job_t job;
    tgt_exports_t *x;
    nbd_list_t *op;
    int rc;
    tgt_list_entry_t *e;
    size_t n, cap;
} tgt_list_job_t;

/* ---- names ------------------------------------------------------------ */

/* Split MACHINE/DISK@SELECTOR into j; -EINVAL with j->msg when it is not
 * one. Both names must be names an agent could have sent (wire_name_ok). */
static int tgt__parse_name(const char *name, tgt_open_job_t *j)
{
    const char *slash = strchr(name, '/');
    const char *at = slash ? strchr(slash + 1, '@') : NULL;
    if (!slash || !at) {
        snprintf(j->msg, sizeof j->msg, "'%s' is not an export name: %s", name, tgt__name_help);
        return -EINVAL;
    }
    size_t ml = (size_t)(slash - name), dl = (size_t)(at - slash - 1), sl = strlen(at + 1);
    if (ml == 0 || ml > WIRE_MAX_NAME || dl == 0 || dl > WIRE_MAX_NAME) {
        snprintf(j->msg, sizeof j->msg, "'%s' is not an export name: the machine and the disk are 1 to %u characters; %s",
                 name, WIRE_MAX_NAME, tgt__name_help);
        return -EINVAL;
    }
    memcpy(j->machine, name, ml);
    j->machine[ml] = '\0';
    memcpy(j->disk, slash + 1, dl);
    j->disk[dl] = '\0';
    if (!wire_name_ok(j->machine) || !wire_name_ok(j->disk)) {
        snprintf(j->msg, sizeof j->msg, "'%s' is not an export name: machine and disk names are made of A-Z a-z 0-9 . _ -; %s",
                 name, tgt__name_help);
        return -EINVAL;
    }
    if (sl > TGT_MAX_SELECTOR) {
        snprintf(j->msg, sizeof j->msg,
                 "the selector of '%s' is not a point selector (too long): use latest, latest-processed, "
                 "latest-app, latest-multivm-processed, latest-multivm-app, a point id or @TIME",
                 name);
        return -EINVAL;
    }
    memcpy(j->selector, at + 1, sl + 1);
    return 0;
}

/* ---- opens, on an open thread ------------------------------------------ */

static void tgt__open_work(tgt_job_t *job)
{
    tgt_open_job_t *j = tgt__container_of(job, tgt_open_job_t, job);
    pts_t *pts = j->x->pts;
    pts_machine_t m;
    char why[256] = "";
    int rc = pts_machine(pts, j->machine, &m);
    if (rc == TM_ENOTFOUND) {
        snprintf(j->msg, sizeof j->msg, "no machine named '%s' has sent data to this appliance", j->machine);
        j->rc = -ENOENT;
        return;
    }
    if (rc) {
        snprintf(j->msg, sizeof j->msg, "machine %s cannot be looked up: %s", j->machine, tm_strerror(rc));
        j->rc = rc;
        return;
    }
    unsigned d = 0;
    while (d < m.ndisks && strcmp(m.disks[d].name, j->disk) != 0)
        d++;
    if (d == m.ndisks) {
        int n = snprintf(j->msg, sizeof j->msg, "machine %s has no disk named '%s' (its disks:", j->machine, j->disk);
        for (unsigned i = 0; i < m.ndisks && n > 0 && (size_t)n < sizeof j->msg; i++)
            n += snprintf(j->msg + n, sizeof j->msg - (size_t)n, " %s", m.disks[i].name);
        if (n > 0 && (size_t)n < sizeof j->msg)
            snprintf(j->msg + n, sizeof j->msg - (size_t)n, "%s)", m.ndisks ? "" : " none");
        j->rc = -ENOENT;
        return;
    }
    rc = pts_resolve(pts, j->machine, j->selector, &j->pt, why, sizeof why);
    switch (rc) {
    case 0:
        break;
    case TM_EINVAL: /* not a selector */
        snprintf(j->msg, sizeof j->msg, "%s", why);
        j->rc = -EINVAL;
        return;
    case TM_ENOTFOUND:
    case TM_ENOPOINT: /* a selector naming no point */
        snprintf(j->msg, sizeof j->msg, "%s/%s@%s names no point: %s", j->machine, j->disk, j->selector,
                 why[0] ? why : tm_strerror(rc));
        j->rc = -ENOENT;
        return;
    default:
        snprintf(j->msg, sizeof j->msg, "%s/%s@%s cannot be resolved: %s", j->machine, j->disk, j->selector,
                 why[0] ? why : tm_strerror(rc));
        j->rc = rc;
        return;
    }
    /* Between resolving and pinning, retention may have moved the horizon
     * past the point: then it is gone. */
    rc = pts_pin(pts, m.id, j->pt.seq);
    if (rc) {
        snprintf(j->msg, sizeof j->msg, "%s/%s@%s: point %" PRIu64 " %s", j->machine, j->disk, j->selector,
                 j->pt.seq,
                 rc == TM_ENOPOINT ? "has just passed the retention horizon" : "cannot be kept for reading");
        j->rc = rc == TM_ENOPOINT ? -ENOENT : rc;
        return;
    }
    j->mid = m.id;
    j->disk_ix = (uint16_t)d;
    j->size = m.disks[d].size;
    j->rc = 0;
}

/* ---- opens and releases, on the loop ------------------------------------ */

/* A selector that may name another point at the next open. Two
 * connections opening it may get two points, so it must not promise that
 * several connections see the same bytes (NBD_FLAG_CAN_MULTI_CONN), or a
 * client that splits a copy over connections (nbdcopy) mixes points. */
static bool tgt__moving(const char *selector)
{
    return strncmp(selector, "latest", 6) == 0; /* latest, latest-processed, latest-app, latest-multivm-* */
}

static tgt_export_t *tgt__find(tgt_exports_t *x, uint32_t mid, uint16_t disk, uint64_t seq)
{
    for (tgt_export_t *ex = x->exports; ex; ex = ex->next)
        if (ex->mid == mid && ex->disk == disk && ex->seq == seq)
            return ex;
    return NULL;
}

void tgt__export_init(tgt_export_t *ex, tgt_exports_t *x, const char *machine, const char *disk_name, uint32_t mid,
                      uint16_t disk, uint64_t size, uint64_t seq)
{
    ex->x = x;
    snprintf(ex->machine, sizeof ex->machine, "%s", machine);
    snprintf(ex->disk_name, sizeof ex->disk_name, "%s", disk_name);
    ex->mid = mid;
    ex->disk = disk;
    ex->size = size;
    ex->seq = seq;
    pts_base_path(x->pts, machine, disk_name, ex->base_path, sizeof ex->base_path);
    pthread_mutex_init(&ex->mu, NULL);
    /* A committed machine's export (seq 0) reads no point. Without memory
     * for the cache, reads scan the index: slower, the same bytes. */
    size_t cap = atomic_load(&x->chunk_cap);
    if (seq && cap && !(ex->chunks = tgt_chunks_new(size, cap, &x->chunk_cnt)))
        tm_warn("target: no memory for the chunk cache of %s/%s at point %" PRIu64 ": every read scans the index",
                machine, disk_name, seq);
}

static tgt_export_t *tgt__export_new(tgt_exports_t *x, const tgt_open_job_t *j)
{
    tgt_export_t *ex = tm_calloc(1, sizeof *ex);
    if (!ex)
        return NULL;
    tgt__export_init(ex, x, j->machine, j->disk, j->mid, j->disk_ix, j->size, j->pt.seq);
    ex->next = x->exports;
    x->exports = ex;
    return ex;
}

static void tgt__open_done(tgt_job_t *job)
{
    tgt_open_job_t *j = tgt__container_of(job, tgt_open_job_t, job);
    tgt_exports_t *x = j->x;
    nbd_open_t *op = j->op;
    int rc = job->cancelled ? -ESHUTDOWN : j->rc;
    if (rc == 0 && x->stopping) {
        pts_unpin(x->pts, j->mid, j->pt.seq);
        rc = -ESHUTDOWN;
    }
    tgt_export_t *ex = NULL;
    if (rc == 0) {
        ex = tgt__find(x, j->mid, j->disk_ix, j->pt.seq);
        if (!ex && !(ex = tgt__export_new(x, j))) {
            pts_unpin(x->pts, j->mid, j->pt.seq);
            rc = -ENOMEM;
        }
    }
    if (rc) {
        if (j->msg[0])
            op->message = j->msg;
        nbd_open_done(op, rc);
        tm_free(j);
        return;
    }
    ex->refs++;
    tm_info("target: %s is point %" PRIu64 " of %s (%s), %" PRIu64 " bytes", op->name, ex->seq, ex->machine,
            pts_kind_name(j->pt.kind), ex->size);
    op->export = ex;
    op->size = ex->size;
    op->read_only = true;
    op->multi_conn = !tgt__moving(j->selector);
    tm_free(j);
    nbd_open_done(op, 0);
}

static void tgt__open(void *backend, nbd_open_t *op)
{
    tgt_exports_t *x = backend;
    tgt_open_job_t *j = tm_calloc(1, sizeof *j);
    if (!j) {
        nbd_open_done(op, -ENOMEM);
        return;
    }
    j->x = x;
    j->op = op;
    int rc = x->stopping ? -ESHUTDOWN : tgt__parse_name(op->name, j);
    bool test = rc == 0 && strcmp(j->selector, tgt__session_suffix(TGT_SESSION_TEST)) == 0;
    if (test || (rc == 0 && strcmp(j->selector, tgt__session_suffix(TGT_SESSION_FAILOVER)) == 0)) {
        /* a session's export: known on the loop, nothing to wait for */
        rc = tgt__session_open(x, test ? TGT_SESSION_TEST : TGT_SESSION_FAILOVER, j->machine, j->disk, op, j->msg,
                               sizeof j->msg);
        if (rc == 0 || rc == TGT_OPEN_PARKED) {
            tm_free(j);
            if (rc == 0)
                nbd_open_done(op, 0);
            return;
        }
    }
    if (rc) {
        if (j->msg[0])
            op->message = j->msg;
        nbd_open_done(op, rc);
        tm_free(j);
        return;
    }
    j->job.work = tgt__open_work;
    j->job.done = tgt__open_done;
    tgt_workers_submit(x->openers, &j->job);
}

/* The last release frees the export: nothing reads it any more (nbd calls
 * release after the last io completed). */
static void tgt__release(void *export)
{
    tgt_export_t *ex = export;
    tgt_exports_t *x = ex->x;
    if (ex->session) {
        if (--ex->refs == 0)
            tgt__session_export_released(ex);
        return;
    }
    pts_unpin(x->pts, ex->mid, ex->seq);
    if (--ex->refs > 0)
        return;
    for (tgt_export_t **p = &x->exports; *p; p = &(*p)->next) {
        if (*p == ex) {
            *p = ex->next;
            break;
        }
    }
    tgt__export_drop_readers(ex);
    pthread_mutex_destroy(&ex->mu);
    tm_free(ex);
}

/* ---- listings ------------------------------------------------------------ */

static int tgt__list_add(tgt_list_job_t *l, const pts_machine_t *m, unsigned d, const char *sel,
                         const pts_point_t *pt, const char *what)
{
    if (l->n == l->cap && tm_grow((void **)&l->e, &l->cap, l->n + 1, sizeof *l->e) != 0)
        return -ENOMEM;
    tgt_list_entry_t *e = &l->e[l->n++];
    snprintf(e->name, sizeof e->name, "%s/%s@%s", m->name, m->disks[d].name, sel);
    snprintf(e->desc, sizeof e->desc, "machine %s disk %s (%" PRIu64 " bytes) at its %s point, now %" PRIu64 "%s%s",
             m->name, m->disks[d].name, m->disks[d].size, what, pt->seq, pt->tag[0] ? " tagged " : "", pt->tag);
    return 0;
}

static void tgt__list_work(tgt_job_t *job)
{
    tgt_list_job_t *l = tgt__container_of(job, tgt_list_job_t, job);
    pts_t *pts = l->x->pts;
    pts_machine_t *ms;
    size_t n;
    l->rc = pts_machines(pts, &ms, &n);
    if (l->rc)
        return;
    for (size_t i = 0; i < n && l->rc == 0; i++) {
        const pts_machine_t *m = &ms[i];
        if (!m->has_point)
            continue; /* nothing to open at once */
        pts_point_t *app = NULL;
        size_t napp = 0;
        pts_query_t q = {.kinds = 1u << PTS_KIND_APP, .limit = 1};
        if (pts_points(pts, m->name, &q, &app, &napp) != 0)
            napp = 0; /* the machine vanished meanwhile: its latest-processed is still listed */
        for (unsigned d = 0; d < m->ndisks && l->rc == 0; d++) {
            l->rc = tgt__list_add(l, m, d, "latest-processed", &m->latest, "newest processed");
            if (l->rc == 0 && napp > 0)
                l->rc = tgt__list_add(l, m, d, "latest-app", &app[0], "newest app-consistent");
        }
        tm_free(app);
    }
    tm_free(ms);
}

static void tgt__list_done(tgt_job_t *job)
{
    tgt_list_job_t *l = tgt__container_of(job, tgt_list_job_t, job);
    int rc = job->cancelled ? -ESHUTDOWN : l->rc;
    for (size_t i = 0; i < l->n && rc == 0; i++)
        rc = nbd_list_add(l->op, l->e[i].name, l->e[i].desc);
    if (rc == 0)
        rc = tgt__sessions_list(l->x, l->op);
    if (rc)
        tm_warn("target: listing the exports failed: %s", tm_strerror(rc));
    nbd_list_done(l->op, rc);
    tm_free(l->e);
    tm_free(l);
}

static void tgt__list(void *backend, nbd_list_t *op)
{
    tgt_exports_t *x = backend;
    tgt_list_job_t *l = tm_calloc(1, sizeof *l);
    if (!l) {
        nbd_list_done(op, -ENOMEM);
        return;
    }
    l->x = x;
    l->op = op;
    l->job.work = tgt__list_work;
    l->job.done = tgt__list_done;
    tgt_workers_submit(x->openers, &l->job);
}

/* Exports at points are opened read-only, so nbd refuses writes, trims
 * and zeroes to them (EPERM) and advertises no flush; only sessions'
 * exports (@test, @failover: export_session.c) are opened writable. */
static const nbd_backend_ops_t tgt__ops = {
    .open = tgt__open,
    .list = tgt__list,
    .read = tgt__export_io,
    .write = tgt__export_io,
    .flush = tgt__export_io,
    .trim = tgt__export_io,
    .zero = tgt__export_io,
    .cancel = tgt__export_cancel,
    .release = tgt__release,
};

/* ---- life ---------------------------------------------------------------- */

int tgt_exports_start(uv_loop_t *loop, pts_t *pts, jnl_t *jnl, const char *listen_addr, tgt_exports_t **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    struct sockaddr_storage ss;
    if (tm_addr_parse(listen_addr, &ss) != 0) {
        snprintf(err, errlen, "'%s' is not an address to listen on for NBD (HOST:PORT or [V6]:PORT, numeric host)",
                 listen_addr);
        return TM_EINVAL;
    }
    tgt_exports_t *x = tm_calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    x->loop = loop;
    x->pts = pts;
    x->jnl = jnl;
    x->addr = ss;
    atomic_init(&x->chunk_cap, (size_t)TGT_CHUNKS_DEFAULT_CAP);
    int rc = nbd_server_new(loop, &tgt__ops, x, &x->srv);
    if (rc) {
        snprintf(err, errlen, "cannot make the NBD server: %s", tm_strerror(rc));
        goto out_free;
    }
    rc = nbd_server_listen(x->srv, listen_addr);
    if (rc) {
        snprintf(err, errlen, "cannot listen for NBD on %s: %s", listen_addr, tm_strerror(rc));
        goto out_server;
    }
    rc = tgt_workers_start(loop, TGT_OPEN_THREADS, "tm-nbd-open", &x->openers);
    if (rc) {
        snprintf(err, errlen, "cannot start the NBD open threads: %s", tm_strerror(rc));
        goto out_server;
    }
    rc = tgt_workers_start(loop, TGT_READ_THREADS, "tm-nbd-read", &x->readers);
    if (rc) {
        snprintf(err, errlen, "cannot start the NBD read threads: %s", tm_strerror(rc));
        goto out_openers;
    }
    rc = tgt_workers_start(loop, TGT_FILL_THREADS, "tm-nbd-fill", &x->fillers);
    if (rc) {
        snprintf(err, errlen, "cannot start the failover commit threads: %s", tm_strerror(rc));
        goto out_readers;
    }
    int port = nbd_server_port(x->srv);
    if (x->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&x->addr)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&x->addr)->sin6_port = htons((uint16_t)port);
    *out = x;
    return 0;

out_readers:
    tgt_workers_stop(x->readers, NULL, NULL);
out_openers:
    tgt_workers_stop(x->openers, NULL, NULL);
out_server:
    /* No connection yet, so closing never calls back into x. */
    nbd_server_close(x->srv, NULL, NULL);
out_free:
    tm_free(x);
    return rc;
}

void tgt_exports_address(const tgt_exports_t *x, char *buf, size_t len)
{
    tm_addr_format((const struct sockaddr *)&x->addr, buf, len);
}

int tgt_exports_port(const tgt_exports_t *x)
{
    return x->srv ? nbd_server_port(x->srv) : -ENOTCONN;
}

void tgt_exports_set_chunk_cache(tgt_exports_t *x, size_t cap)
{
    atomic_store(&x->chunk_cap, cap);
}

void tgt_exports_chunk_stats(tgt_exports_t *x, tgt_chunk_stats_t *out)
{
    const tgt_chunk_counters_t *c = &x->chunk_cnt;
    out->entries = atomic_load(&c->entries);
    out->bytes = atomic_load(&c->bytes);
    out->hits = atomic_load(&c->hits);
    out->misses = atomic_load(&c->misses);
    out->evictions = atomic_load(&c->evictions);
    out->stale = atomic_load(&c->stale);
}

static void tgt__pool_closed(void *arg)
{
    tgt_exports_t *x = arg;
    if (--x->closing > 0)
        return;
    tgt__sessions_drop_all(x);
    /* nbd released every open before its close callback */
    if (x->exports)
        tm_error("target: an NBD export was not released at stop (a bug): %s/%s", x->exports->machine,
                 x->exports->disk_name);
    void (*cb)(void *) = x->stop_cb;
    void *cb_arg = x->stop_arg;
    tm_free(x);
    if (cb)
        cb(cb_arg);
}

/* Every open, listing and read has completed and every export is
 * released: the pools are idle. */
static void tgt__server_closed(void *arg)
{
    tgt_exports_t *x = arg;
    x->closing = 3;
    tgt_workers_stop(x->openers, tgt__pool_closed, x);
    tgt_workers_stop(x->readers, tgt__pool_closed, x);
    tgt_workers_stop(x->fillers, tgt__pool_closed, x);
}

void tgt_exports_stop(tgt_exports_t *x, void (*cb)(void *arg), void *arg)
{
    x->stopping = true;
    /* commits stop at their next step rather than hold the stop up */
    tgt__sessions_stopping(x);
    x->stop_cb = cb;
    x->stop_arg = arg;
    nbd_server_t *srv = x->srv;
    x->srv = NULL;
    nbd_server_close(srv, tgt__server_closed, x);
}
