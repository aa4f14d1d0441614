/* The rounds of replication groups (consistency.h). Everything here runs
 * on the loop's thread but the recording worker (record_work). */
#include "consistency/consistency.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

/* How long the recording waits for the members' tags to be processed: an
 * agent appends its tag as soon as the commit arrives, so a tag missing
 * this long after everything received was processed is not coming (its
 * agent released at its hold limit, or its session ended). */
#define CNS_RECORD_WAIT_NS (60ull * 1000000000ull)

typedef enum { R_PREPARING, R_COMMITTED, R_RECORDED, R_ABORTED, R_UNRECORDED } cns_rstate_t;

static const char *const cns_rstate_names[] = {"preparing", "committed", "recorded", "aborted", "unrecorded"};

typedef struct cns_round {
    uint64_t id;     /* its start time, ns: unique per group, the members' tag id */
    bool app;
    cns_rstate_t state;
    uint64_t started_ns, committed_ns, ended_ns; /* monotonic */
    uint64_t started_wall;
    char reason[256];
    size_t nprepared;
    uint64_t *seq;   /* per member: PREPARED's seq, then (recorded) its group tag's */
    bool *held;      /* per member: PREPARED came */
} cns_round_t;

typedef struct cns_group cns_group_t;

/* The recording of one committed round, on the thread pool. */
typedef struct cns_rec {
    uv_work_t w;
    uv_timer_t retry;
    cns_group_t *g;
    cns_round_t r;   /* a copy (its seq array owned): seq = PREPARED's */
    uint64_t *at;    /* per member: its group tag's point, once found */
    uint64_t deadline;
    int rc;
    bool recorded;
    size_t missing;
    char why[256];
} cns_rec_t;

struct cns_group {
    cns_t *c;
    char *name;
    char **members;
    size_t n;
    uint64_t crash_every_ns, app_every_ns;
    uint32_t hold_ms, app_hold_ms;
    uv_timer_t crash_t, app_t, hold_t;
    cns_round_t *cur;              /* preparing, or NULL */
    cns_round_t hist[CNS_HISTORY]; /* ring, the newest at (next - 1) */
    size_t next, nhist;
    uint64_t n_committed, n_recorded, n_aborted;
    uint64_t round_ns[CNS_HISTORY];
    size_t nround_ns;
};

struct cns {
    uv_loop_t *loop;
    ingest_t *ig;
    pts_t *pts;
    cns_group_t *groups;
    size_t ngroups;
    unsigned workers;     /* recordings in flight */
    size_t outstanding;   /* prepare callbacks ingest still owes us */
    unsigned open_handles;
    bool stopping;
    void (*stopped)(void *arg);
    void *stopped_arg;
    uint64_t last_id;
};

static void cns_maybe_free(cns_t *c);

/* ---- the history --------------------------------------------------------------- */

/* A round that ended goes into its group's history (r's seq array moves). */
static void cns_archive(cns_group_t *g, cns_round_t *r)
{
    cns_round_t *slot = &g->hist[g->next];
    if (g->nhist == CNS_HISTORY)
        tm_free(slot->seq);
    tm_free(r->held); /* only a round in flight needs it */
    r->held = NULL;
    *slot = *r;
    r->seq = NULL;
    g->next = (g->next + 1) % CNS_HISTORY;
    if (g->nhist < CNS_HISTORY)
        g->nhist++;
}

/* The round of id in the history, or NULL. */
static cns_round_t *cns_find(cns_group_t *g, uint64_t id)
{
    for (size_t i = 0; i < g->nhist; i++)
        if (g->hist[i].id == id)
            return &g->hist[i];
    return NULL;
}

/* ---- ending a round ----------------------------------------------------------------- */

static void cns_abort(cns_group_t *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cns_abort(cns_group_t *g, const char *fmt, ...)
{
    cns_round_t *r = g->cur;
    if (!r)
        return;
    uv_timer_stop(&g->hold_t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < g->n; i++)
        ingest_group_abort(g->c->ig, g->members[i], r->id); /* a member never asked just ignores it */
    r->state = R_ABORTED;
    r->ended_ns = tm_mono_ns();
    g->n_aborted++;
    tm_warn("consistency: group %s: %s round %" PRIu64 " aborted: %s", g->name, r->app ? "app" : "crash", r->id,
            r->reason);
    g->cur = NULL;
    cns_archive(g, r);
    tm_free(r);
}

/* The member's point at its group tag of round, after seq: 0 with *at, or
 * TM_ENOPOINT while it is not processed (or never comes). The tag follows
 * seq with at most flushes and crash tags between (ingest.h), so it is
 * among the first points after it. */
static int cns_tag_point(pts_t *pts, const char *machine, uint64_t after, uint64_t round, uint64_t *at)
{
    pts_point_t *v;
    size_t n;
    int rc = pts_points_after(pts, machine, after, 16, &v, &n);
    if (rc)
        return rc;
    rc = TM_ENOPOINT;
    for (size_t i = 0; i < n; i++) {
        if (v[i].tag_id == round) {
            *at = v[i].seq;
            rc = 0;
            break;
        }
    }
    tm_free(v);
    return rc;
}

/* One look at whether every member's tag is processed, and if so the
 * group point recorded. Never waits: libuv's pool is shared, so a round
 * not ready is looked at again a little later (record_done). */
static void record_work(uv_work_t *w)
{
    cns_rec_t *k = w->data;
    cns_group_t *g = k->g;
    pts_t *pts = g->c->pts;
    size_t missing = 0;
    k->rc = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (!k->at[i] && cns_tag_point(pts, g->members[i], k->r.seq[i], k->r.id, &k->at[i]) != 0) {
            missing++;
            k->missing = i;
        }
    }
    if (missing) {
        k->rc = TM_ENOPOINT;
        snprintf(k->why, sizeof k->why, "member %s: its group tag never arrived (its agent released at its hold "
                 "limit before the commit, or its session ended)", g->members[k->missing]);
        return;
    }
    pts_group_member_t *mem = tm_calloc(g->n, sizeof *mem);
    if (!mem) {
        k->rc = -ENOMEM;
        snprintf(k->why, sizeof k->why, "out of memory");
        return;
    }
    for (size_t i = 0; i < g->n; i++) {
        snprintf(mem[i].machine, sizeof mem[i].machine, "%s", g->members[i]);
        mem[i].seq = k->at[i];
    }
    k->rc = pts_group_point_add(pts, g->name, k->r.id, k->r.app ? PTS_KIND_APP : PTS_KIND_CRASH, tm_now_ns(), mem,
                                g->n, k->why, sizeof k->why);
    tm_free(mem);
    k->recorded = k->rc == 0;
}

static void record_again(uv_timer_t *t);

static void rec_closed(uv_handle_t *h)
{
    cns_rec_t *k = h->data;
    cns_t *c = k->g->c;
    tm_free(k->r.seq);
    tm_free(k->at);
    tm_free(k);
    c->workers--;
    cns_maybe_free(c);
}

static void record_done(uv_work_t *w, int status)
{
    cns_rec_t *k = w->data;
    cns_group_t *g = k->g;
    cns_t *c = g->c;
    if (status == 0 && !k->recorded && k->rc == TM_ENOPOINT && !c->stopping && tm_mono_ns() < k->deadline) {
        /* not processed yet: look again shortly */
        uv_timer_start(&k->retry, record_again, 20, 0);
        return;
    }
    cns_round_t *r = cns_find(g, k->r.id);
    if (r) {
        r->ended_ns = tm_mono_ns();
        if (status == 0 && k->recorded) {
            r->state = R_RECORDED;
            memcpy(r->seq, k->at, g->n * sizeof *r->seq);
            g->n_recorded++;
            g->round_ns[g->nround_ns % CNS_HISTORY] = r->ended_ns - r->started_ns;
            g->nround_ns++;
        } else {
            r->state = R_UNRECORDED;
            snprintf(r->reason, sizeof r->reason, "%s", status ? "cancelled" : k->why);
            tm_warn("consistency: group %s: round %" PRIu64 " committed but made no group point: %s", g->name,
                    r->id, r->reason);
        }
    }
    uv_close((uv_handle_t *)&k->retry, rec_closed);
}

static void record_again(uv_timer_t *t)
{
    cns_rec_t *k = t->data;
    if (uv_queue_work(k->g->c->loop, &k->w, record_work, record_done) != 0) {
        k->recorded = false;
        snprintf(k->why, sizeof k->why, "the recording could not be queued");
        k->rc = -ENOMEM;
        record_done(&k->w, 0);
    }
}

/* Every member is held: commit, then record on the thread pool. */
static void cns_commit(cns_group_t *g)
{
    cns_round_t *r = g->cur;
    uv_timer_stop(&g->hold_t);
    r->committed_ns = tm_mono_ns();
    for (size_t i = 0; i < g->n; i++) {
        int rc = ingest_group_commit(g->c->ig, g->members[i], r->id);
        if (rc && !r->reason[0])
            snprintf(r->reason, sizeof r->reason, "member %s: the commit could not be sent: %s", g->members[i],
                     tm_strerror(rc));
    }
    r->state = R_COMMITTED;
    g->n_committed++;
    g->cur = NULL;
    cns_rec_t *k = tm_calloc(1, sizeof *k);
    uint64_t *seq = k ? tm_malloc(g->n * sizeof *seq) : NULL;
    if (k && seq && !(k->at = tm_calloc(g->n, sizeof *k->at))) {
        tm_free(seq);
        seq = NULL;
    }
    if (k && seq) {
        memcpy(seq, r->seq, g->n * sizeof *seq);
        k->r = *r;
        k->r.seq = seq;
        k->r.held = NULL;
    }
    cns_archive(g, r);
    tm_free(r);
    if (!k || !seq) {
        if (k)
            tm_free(k->at);
        tm_free(k);
        tm_free(seq);
        return;
    }
    k->g = g;
    k->w.data = k;
    k->retry.data = k;
    k->deadline = tm_mono_ns() + CNS_RECORD_WAIT_NS;
    uv_timer_init(g->c->loop, &k->retry);
    g->c->workers++;
    record_again(&k->retry);
}

/* ---- starting a round ------------------------------------------------------------------ */

static void on_prepared(void *arg, const char *machine, uint64_t round, int status, uint64_t seq, const char *reason)
{
    cns_group_t *g = arg;
    cns_t *c = g->c;
    c->outstanding--;
    cns_round_t *r = g->cur;
    if (!c->stopping && r && r->id == round && r->state == R_PREPARING) {
        size_t i = 0;
        while (i < g->n && strcmp(g->members[i], machine) != 0)
            i++;
        if (i == g->n) {
            /* not ours: ignore */
        } else if (status != 0) {
            cns_abort(g, "member %s: %s", machine, reason && *reason ? reason : tm_strerror(status));
        } else if (!r->held[i]) {
            r->held[i] = true;
            r->seq[i] = seq; /* the tag follows it */
            if (++r->nprepared == g->n)
                cns_commit(g);
        }
    }
    cns_maybe_free(c);
}

static void on_hold_limit(uv_timer_t *t)
{
    cns_group_t *g = t->data;
    if (!g->cur)
        return;
    uint32_t limit = g->cur->app ? g->app_hold_ms : g->hold_ms;
    char waiting[160] = "";
    size_t len = 0;
    for (size_t i = 0; i < g->n && len < sizeof waiting - 40; i++)
        if (!g->cur->held[i])
            len += (size_t)snprintf(waiting + len, sizeof waiting - len, "%s%s", len ? ", " : "", g->members[i]);
    cns_abort(g, "not every member was held within the %u ms limit (still waiting for: %s)", limit, waiting);
}

static int cns_round(cns_group_t *g, bool app, uint64_t *id_out)
{
    cns_t *c = g->c;
    if (g->cur)
        return -EBUSY;
    if (c->stopping)
        return -ESHUTDOWN;
    cns_round_t *r = tm_calloc(1, sizeof *r);
    if (r) {
        r->seq = tm_calloc(g->n, sizeof *r->seq);
        r->held = tm_calloc(g->n, sizeof *r->held);
    }
    if (!r || !r->seq || !r->held) {
        if (r) {
            tm_free(r->seq);
            tm_free(r->held);
            tm_free(r);
        }
        return -ENOMEM;
    }
    uint64_t id = tm_now_ns();
    if (id <= c->last_id)
        id = c->last_id + 1;
    c->last_id = id;
    r->id = id;
    r->app = app;
    r->state = R_PREPARING;
    r->started_ns = tm_mono_ns();
    r->started_wall = tm_now_ns();
    g->cur = r;
    if (id_out)
        *id_out = id;
    uint32_t limit = app ? g->app_hold_ms : g->hold_ms;
    char name[WIRE_MAX_NAME + 1];
    snprintf(name, sizeof name, "%s-%" PRIu64, app ? "group-app" : "group", id);
    uv_timer_start(&g->hold_t, on_hold_limit, limit, 0);
    for (size_t i = 0; i < g->n && g->cur == r; i++) {
        int rc = ingest_group_prepare(c->ig, g->members[i], id, app ? WIRE_TAG_APP : WIRE_TAG_CRASH, limit, name,
                                      on_prepared, g);
        if (rc == 0) {
            c->outstanding++;
            continue;
        }
        cns_abort(g, "member %s: %s", g->members[i],
                  rc == -ENOTCONN || rc == TM_ECLOSED ? "its agent is not connected"
                  : rc == TM_ENOTFOUND               ? "it has never connected to this appliance"
                                                     : tm_strerror(rc));
    }
    return 0;
}

static void on_crash_timer(uv_timer_t *t)
{
    cns_group_t *g = t->data;
    if (!g->cur)
        cns_round(g, false, NULL);
}

static void on_app_timer(uv_timer_t *t)
{
    cns_group_t *g = t->data;
    if (!g->cur)
        cns_round(g, true, NULL);
}

int cns_round_now(cns_t *c, const char *group, bool app, uint64_t *round)
{
    for (size_t i = 0; i < c->ngroups; i++)
        if (strcmp(c->groups[i].name, group) == 0)
            return cns_round(&c->groups[i], app, round);
    return TM_ENOTFOUND;
}

/* ---- start and stop --------------------------------------------------------------------- */

int cns_start(uv_loop_t *loop, ingest_t *ig, pts_t *pts, const cns_group_cfg_t *groups, size_t n, cns_t **out,
              char *err, size_t errlen)
{
    cns_t *c = tm_calloc(1, sizeof *c);
    if (!c || (n && !(c->groups = tm_calloc(n, sizeof *c->groups)))) {
        tm_free(c);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->loop = loop;
    c->ig = ig;
    c->pts = pts;
    pts_group_def_t *defs = tm_calloc(n ? n : 1, sizeof *defs);
    int rc = defs ? 0 : -ENOMEM;
    for (size_t k = 0; k < n && rc == 0; k++) {
        const cns_group_cfg_t *gc = &groups[k];
        cns_group_t *g = &c->groups[k];
        g->c = c;
        g->name = tm_strdup(gc->name);
        g->members = tm_calloc(gc->nmembers ? gc->nmembers : 1, sizeof *g->members);
        if (!g->name || !g->members) {
            rc = -ENOMEM;
            break;
        }
        c->ngroups++;
        for (size_t i = 0; i < gc->nmembers && rc == 0; i++) {
            if (!(g->members[i] = tm_strdup(gc->members[i])))
                rc = -ENOMEM;
            else
                g->n++;
        }
        g->crash_every_ns = gc->crash_every_ns ? gc->crash_every_ns : CNS_DEFAULT_CRASH_EVERY_NS;
        g->app_every_ns = gc->app_every_ns ? gc->app_every_ns : CNS_DEFAULT_APP_EVERY_NS;
        g->hold_ms = gc->hold_ms ? gc->hold_ms : CNS_DEFAULT_HOLD_MS;
        g->app_hold_ms = gc->app_hold_ms ? gc->app_hold_ms : CNS_DEFAULT_APP_HOLD_MS;
        defs[k] = (pts_group_def_t){g->name, (const char *const *)g->members, g->n};
        uv_timer_init(loop, &g->crash_t);
        uv_timer_init(loop, &g->app_t);
        uv_timer_init(loop, &g->hold_t);
        g->crash_t.data = g->app_t.data = g->hold_t.data = g;
        c->open_handles += 3;
        if (g->crash_every_ns != UINT64_MAX)
            uv_timer_start(&g->crash_t, on_crash_timer, g->crash_every_ns / 1000000, g->crash_every_ns / 1000000);
        if (g->app_every_ns != UINT64_MAX)
            uv_timer_start(&g->app_t, on_app_timer, g->app_every_ns / 1000000, g->app_every_ns / 1000000);
    }
    if (rc == 0)
        rc = pts_set_groups(pts, defs, c->ngroups);
    tm_free(defs);
    if (rc) {
        snprintf(err, errlen, "out of memory");
        c->stopping = true;
        cns_stop(c, NULL, NULL);
        return rc;
    }
    *out = c;
    return 0;
}

static void cns_free(cns_t *c)
{
    for (size_t k = 0; k < c->ngroups; k++) {
        cns_group_t *g = &c->groups[k];
        for (size_t i = 0; i < g->n; i++)
            tm_free(g->members[i]);
        tm_free(g->members);
        tm_free(g->name);
        for (size_t i = 0; i < g->nhist; i++)
            tm_free(g->hist[i].seq);
        if (g->cur) {
            tm_free(g->cur->seq);
            tm_free(g->cur->held);
            tm_free(g->cur);
        }
    }
    tm_free(c->groups);
    tm_free(c);
}

/* Stopped once no handle, worker or prepare callback is left: the stop's
 * callback when the handles and workers are done; the memory when ingest
 * owes no callback any more (it calls them when its sessions end). */
static void cns_maybe_free(cns_t *c)
{
    if (!c->stopping || c->open_handles || c->workers)
        return;
    if (c->stopped) {
        void (*cb)(void *) = c->stopped;
        c->stopped = NULL;
        cb(c->stopped_arg);
    }
    if (c->outstanding == 0)
        cns_free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    cns_group_t *g = h->data;
    cns_t *c = g->c;
    c->open_handles--;
    cns_maybe_free(c);
}

void cns_stop(cns_t *c, void (*cb)(void *arg), void *arg)
{
    if (!c) {
        if (cb)
            cb(arg);
        return;
    }
    c->stopping = true;
    c->stopped = cb;
    c->stopped_arg = arg;
    for (size_t k = 0; k < c->ngroups; k++) {
        cns_group_t *g = &c->groups[k];
        if (g->cur)
            cns_abort(g, "the appliance is stopping");
        uv_close((uv_handle_t *)&g->crash_t, on_handle_closed);
        uv_close((uv_handle_t *)&g->app_t, on_handle_closed);
        uv_close((uv_handle_t *)&g->hold_t, on_handle_closed);
    }
    if (c->ngroups == 0)
        cns_maybe_free(c);
}

/* ---- reports ------------------------------------------------------------------------------- */

static json_t *cns_round_json(const cns_group_t *g, const cns_round_t *r)
{
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, r->id);
    json_t *o = json_pack("{s:s,s:s,s:s}", "id", id, "kind", r->app ? "app" : "crash", "state",
                          cns_rstate_names[r->state]);
    json_object_set_new(o, "reason", r->reason[0] ? json_string(r->reason) : json_null());
    json_object_set_new(o, "prepare_ms", r->committed_ns ? json_real((double)(r->committed_ns - r->started_ns) / 1e6)
                                                         : json_null());
    json_object_set_new(o, "round_ms", r->ended_ns && r->state != R_COMMITTED
                                           ? json_real((double)(r->ended_ns - r->started_ns) / 1e6)
                                           : json_null());
    json_t *ms = json_array();
    for (size_t i = 0; i < g->n && r->seq; i++)
        json_array_append_new(ms, json_pack("{s:s,s:o}", "machine", g->members[i], "seq",
                                            r->seq[i] ? json_integer((json_int_t)r->seq[i]) : json_null()));
    json_object_set_new(o, "members", ms);
    return o;
}

static double cns_secs(uint64_t ns)
{
    return ns == UINT64_MAX ? -1 : (double)ns / 1e9;
}

static json_t *cns_one_json(const cns_group_t *g)
{
    json_t *members = json_array();
    for (size_t i = 0; i < g->n; i++)
        json_array_append_new(members, json_string(g->members[i]));
    json_t *o = json_pack("{s:s,s:o,s:o,s:o,s:i,s:i}", "name", g->name, "members", members, "crash_every_seconds",
                          g->crash_every_ns == UINT64_MAX ? json_null() : json_real(cns_secs(g->crash_every_ns)),
                          "app_every_seconds",
                          g->app_every_ns == UINT64_MAX ? json_null() : json_real(cns_secs(g->app_every_ns)),
                          "hold_ms", (int)g->hold_ms, "app_hold_ms", (int)g->app_hold_ms);
    json_object_set_new(o, "rounds", json_pack("{s:I,s:I,s:I}", "committed", (json_int_t)g->n_committed, "recorded",
                                               (json_int_t)g->n_recorded, "aborted", (json_int_t)g->n_aborted));
    json_t *hist = json_array();
    if (g->cur)
        json_array_append_new(hist, cns_round_json(g, g->cur));
    for (size_t i = 0; i < g->nhist; i++) {
        size_t at = (g->next + CNS_HISTORY - 1 - i) % CNS_HISTORY;
        json_array_append_new(hist, cns_round_json(g, &g->hist[at]));
    }
    json_object_set(o, "last_round", json_array_size(hist) ? json_array_get(hist, 0) : json_null());
    json_object_set_new(o, "history", hist);
    return o;
}

json_t *cns_groups_json(cns_t *c)
{
    json_t *a = json_array();
    for (size_t k = 0; c && k < c->ngroups; k++)
        json_array_append_new(a, cns_one_json(&c->groups[k]));
    return a;
}

json_t *cns_group_json(cns_t *c, const char *group)
{
    for (size_t k = 0; c && k < c->ngroups; k++)
        if (strcmp(c->groups[k].name, group) == 0)
            return cns_one_json(&c->groups[k]);
    return NULL;
}

size_t cns_round_times(cns_t *c, const char *group, uint64_t *ns, size_t max)
{
    for (size_t k = 0; k < c->ngroups; k++) {
        cns_group_t *g = &c->groups[k];
        if (strcmp(g->name, group) != 0)
            continue;
        size_t n = g->nround_ns < CNS_HISTORY ? g->nround_ns : CNS_HISTORY;
        if (n > max)
            n = max;
        for (size_t i = 0; i < n; i++)
            ns[i] = g->round_ns[i];
        return n;
    }
    return 0;
}
