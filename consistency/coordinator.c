/* The rounds of replication groups (consistency.h). Everything here runs
 * on the loop's thread but the recording worker (record_work), which
 * reads only its own copy of the round and the round's member list. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "consistency/cns_int.h"

/* How long the recording waits for the members' tags to be processed: an
 * agent appends its tag as soon as the commit arrives, so a tag missing
 * this long after everything received was processed is not coming (its
 * agent released at its hold limit, or its session ended). */
#define CNS_RECORD_WAIT_NS (60ull * 1000000000ull)

/* How soon a recording looks again at tags not yet processed: first
 * soon (the processor usually catches up within a few milliseconds), then
 * less often, so a round's time is not rounded up to a long interval and
 * a slow processor is not polled hard. */
#define CNS_RECORD_RETRY_FIRST_MS 2u
#define CNS_RECORD_RETRY_MAX_MS 50u

const char *const cns_rstate_names[] = {"preparing", "committed", "recorded", "aborted", "unrecorded"};

/* The recording of one committed round, on the thread pool. */
typedef struct cns_rec {
    uv_work_t w;
    uv_timer_t retry;
    cns_group_t *g;
    char group[PTS_MAX_GROUP_NAME + 1];
    cns_round_t r;   /* a copy (its seq array and member list owned): seq = PREPARED's */
    uint64_t *at;    /* per member: its group tag's point, once found */
    uint64_t deadline;
    unsigned retry_ms;
    int rc;
    bool recorded;
    size_t missing;
    char why[256];
} cns_rec_t;

void cns__round_free(cns_round_t *r)
{
    tm_free(r->seq);
    tm_free(r->held);
    cns_members_unref(r->m);
    r->seq = NULL;
    r->held = NULL;
    r->m = NULL;
}

/* ---- the history --------------------------------------------------------------- */

/* A round that ended goes into its group's history (r's arrays move). */
static void cns_archive(cns_group_t *g, cns_round_t *r)
{
    cns_round_t *slot = &g->hist[g->next];
    if (g->nhist == CNS_HISTORY)
        cns__round_free(slot);
    tm_free(r->held); /* only a round in flight needs it */
    r->held = NULL;
    *slot = *r;
    r->seq = NULL;
    r->m = NULL;
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

void cns__abort(cns_group_t *g, const char *fmt, ...)
{
    cns_round_t *r = g->cur;
    if (!r)
        return;
    uv_timer_stop(&g->hold_t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < r->m->n; i++)
        ingest_group_abort(g->c->ig, r->m->names[i], r->id); /* a member never asked just ignores it */
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
    const cns_members_t *m = k->r.m;
    size_t missing = 0;
    k->rc = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (!k->at[i] && cns_tag_point(k->g->c->pts, m->names[i], k->r.seq[i], k->r.id, &k->at[i]) != 0) {
            missing++;
            k->missing = i;
        }
    }
    if (missing) {
        k->rc = TM_ENOPOINT;
        snprintf(k->why, sizeof k->why, "member %s: its group tag never arrived (its agent released at its hold "
                 "limit before the commit, or its session ended)", m->names[k->missing]);
        return;
    }
    pts_group_member_t *mem = tm_calloc(m->n, sizeof *mem);
    if (!mem) {
        k->rc = -ENOMEM;
        snprintf(k->why, sizeof k->why, "out of memory");
        return;
    }
    for (size_t i = 0; i < m->n; i++) {
        snprintf(mem[i].machine, sizeof mem[i].machine, "%s", m->names[i]);
        mem[i].seq = k->at[i];
    }
    k->rc = pts_group_point_add(k->g->c->pts, k->group, k->r.id, k->r.app ? PTS_KIND_APP : PTS_KIND_CRASH,
                                tm_now_ns(), mem, m->n, k->why, sizeof k->why);
    tm_free(mem);
    k->recorded = k->rc == 0;
}

static void record_again(uv_timer_t *t);

static void rec_closed(uv_handle_t *h)
{
    cns_rec_t *k = h->data;
    cns_t *c = k->g->c;
    cns_group_t *g = k->g;
    cns__round_free(&k->r);
    tm_free(k->at);
    tm_free(k);
    c->workers--;
    cns__group_unref(g);
    cns__maybe_free(c);
}

static void record_done(uv_work_t *w, int status)
{
    cns_rec_t *k = w->data;
    cns_group_t *g = k->g;
    cns_t *c = g->c;
    if (status == 0 && !k->recorded && k->rc == TM_ENOPOINT && !c->stopping && tm_mono_ns() < k->deadline) {
        /* not processed yet: look again shortly */
        uv_timer_start(&k->retry, record_again, k->retry_ms, 0);
        if (k->retry_ms < CNS_RECORD_RETRY_MAX_MS)
            k->retry_ms *= 2;
        return;
    }
    cns_round_t *r = cns_find(g, k->r.id);
    if (r) {
        r->ended_ns = tm_mono_ns();
        if (status == 0 && k->recorded) {
            r->state = R_RECORDED;
            memcpy(r->seq, k->at, r->m->n * sizeof *r->seq);
            g->n_recorded++;
            if (r->started_wall > g->last_point_wall)
                g->last_point_wall = r->started_wall;
            g->round_ns[g->nround_ns % CNS_HISTORY] = r->ended_ns - r->started_ns;
            g->nround_ns++;
        } else {
            r->state = R_UNRECORDED;
            g->n_unrecorded++;
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

/* The recording of r (committed): a copy of it, or NULL on ENOMEM. */
static cns_rec_t *cns_rec_new(cns_group_t *g, const cns_round_t *r)
{
    cns_rec_t *k = tm_calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->r = *r;
    k->r.held = NULL;
    k->r.seq = tm_malloc(r->m->n * sizeof *k->r.seq);
    k->at = tm_calloc(r->m->n, sizeof *k->at);
    if (!k->r.seq || !k->at) {
        tm_free(k->r.seq);
        tm_free(k->at);
        tm_free(k);
        return NULL;
    }
    memcpy(k->r.seq, r->seq, r->m->n * sizeof *k->r.seq);
    k->r.m = cns_members_ref(r->m);
    k->g = g;
    snprintf(k->group, sizeof k->group, "%s", g->name);
    return k;
}

/* Every member is held: commit, then record on the thread pool. */
static void cns_commit(cns_group_t *g)
{
    cns_round_t *r = g->cur;
    uv_timer_stop(&g->hold_t);
    r->committed_ns = tm_mono_ns();
    for (size_t i = 0; i < r->m->n; i++) {
        int rc = ingest_group_commit(g->c->ig, r->m->names[i], r->id);
        if (rc && !r->reason[0])
            snprintf(r->reason, sizeof r->reason, "member %s: the commit could not be sent: %s", r->m->names[i],
                     tm_strerror(rc));
    }
    r->state = R_COMMITTED;
    g->n_committed++;
    g->cur = NULL;
    /* a member that did not get the commit appends no tag: nothing to wait for */
    cns_rec_t *k = r->reason[0] ? NULL : cns_rec_new(g, r);
    if (!k) {
        r->state = R_UNRECORDED;
        r->ended_ns = tm_mono_ns();
        g->n_unrecorded++;
        if (!r->reason[0])
            snprintf(r->reason, sizeof r->reason, "out of memory for its recording");
        tm_warn("consistency: group %s: round %" PRIu64 " committed but made no group point: %s", g->name, r->id,
                r->reason);
    }
    cns_archive(g, r);
    tm_free(r);
    if (!k)
        return;
    k->w.data = k;
    k->retry.data = k;
    k->retry_ms = CNS_RECORD_RETRY_FIRST_MS;
    k->deadline = tm_mono_ns() + CNS_RECORD_WAIT_NS;
    uv_timer_init(g->c->loop, &k->retry);
    g->c->workers++;
    g->refs++;
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
        while (i < r->m->n && strcmp(r->m->names[i], machine) != 0)
            i++;
        if (i == r->m->n) {
            /* not ours: ignore */
        } else if (status != 0) {
            cns__abort(g, "member %s: %s", machine, reason && *reason ? reason : tm_strerror(status));
        } else if (!r->held[i]) {
            r->held[i] = true;
            r->seq[i] = seq; /* the tag follows it */
            if (++r->nprepared == r->m->n)
                cns_commit(g);
        }
    }
    cns__group_unref(g);
    cns__maybe_free(c);
}

static void on_hold_limit(uv_timer_t *t)
{
    cns_group_t *g = t->data;
    cns_round_t *r = g->cur;
    if (!r)
        return;
    uint32_t limit = r->app ? g->app_hold_ms : g->hold_ms;
    char waiting[160] = "";
    size_t len = 0, more = 0;
    for (size_t i = 0; i < r->m->n; i++) {
        if (r->held[i])
            continue;
        if (len < sizeof waiting - 40)
            len += (size_t)snprintf(waiting + len, sizeof waiting - len, "%s%s", len ? ", " : "", r->m->names[i]);
        else
            more++;
    }
    if (more)
        snprintf(waiting + len, sizeof waiting - len, " and %zu more", more);
    cns__abort(g, "not every member was held within the %u ms limit (still waiting for: %s)", limit, waiting);
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
        r->seq = tm_calloc(g->m->n, sizeof *r->seq);
        r->held = tm_calloc(g->m->n, sizeof *r->held);
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
    r->m = cns_members_ref(g->m);
    r->state = R_PREPARING;
    r->started_ns = tm_mono_ns();
    r->started_wall = tm_now_ns();
    g->cur = r;
    if (id_out)
        *id_out = id;
    uint32_t limit = app ? g->app_hold_ms : g->hold_ms;
    char name[WIRE_MAX_NAME + 1];
    snprintf(name, sizeof name, "%s-%" PRIu64, app ? "group-app" : "group", id);
    /* decided within the limit less twice its margin, so a COMMIT reaches
     * each agent before it acts on the limit (wire.h) */
    uint64_t decide_ms = ((uint64_t)limit * 1000u - 2 * WIRE_GROUP_HOLD_MARGIN_US(limit)) / 1000u;
    uv_timer_start(&g->hold_t, on_hold_limit, decide_ms ? decide_ms : 1, 0);
    for (size_t i = 0; g->cur == r && i < r->m->n; i++) { /* an abort ends (and frees) r */
        int rc = ingest_group_prepare(c->ig, r->m->names[i], id, app ? WIRE_TAG_APP : WIRE_TAG_CRASH, limit, name,
                                      on_prepared, g);
        if (rc == 0) {
            c->outstanding++;
            g->refs++;
            continue;
        }
        ingest_machine_info_t mi;
        bool retired = rc == -ENOTCONN && ingest_machine_state(c->ig, r->m->names[i], &mi) == 0 && mi.retired;
        cns__abort(g, "member %s: %s", r->m->names[i],
                   retired ? "it was retired (its failover was committed) and replicates no more: take it out of "
                             "the group"
                   : rc == -ENOTCONN || rc == TM_ECLOSED ? "its agent is not connected"
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

void cns__schedule(cns_group_t *g)
{
    uv_timer_stop(&g->crash_t);
    uv_timer_stop(&g->app_t);
    if (g->crash_every_ns != UINT64_MAX)
        uv_timer_start(&g->crash_t, on_crash_timer, g->crash_every_ns / 1000000, g->crash_every_ns / 1000000);
    if (g->app_every_ns != UINT64_MAX)
        uv_timer_start(&g->app_t, on_app_timer, g->app_every_ns / 1000000, g->app_every_ns / 1000000);
}

int cns_round_now(cns_t *c, const char *group, bool app, uint64_t *round)
{
    cns_group_t *g = cns__find(c, group);
    return g ? cns_round(g, app, round) : TM_ENOTFOUND;
}
