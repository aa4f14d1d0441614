/* The failover jobs (failover.h): the requests and the job bodies. */
#include "api/failover.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/fo_loop.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "target/image.h"

/* How long a shutdown waits for an agent to send what it holds. */
#define FO_DRAIN_DEFAULT_S 120u
#define FO_DRAIN_MAX_S 3600u
/* How long `latest` waits for processing to catch up. */
#define FO_LATEST_TIMEOUT_MS 120000
/* How long a commit waits for readers of the machine's points to go. */
#define FO_BUSY_WAIT_MS 10000

typedef struct fo_machine {
    char name[WIRE_MAX_NAME + 1];
    bool stopped;     /* its agent got STOP from this job */
    uint64_t tag_id;  /* the STOP's final tag */
    bool have_point;
    pts_point_t point;
    bool served;      /* this job recorded the failover and made the exports */
} fo_machine_t;

typedef struct fo_job {
    api_v1_t *a;
    char action[24];
    char selector[128];
    bool shutdown;   /* failover: stop the source first (planned: always) */
    unsigned drain_s;
    char out[4096];  /* raw images into this folder too; "" = none */
    size_t n;
    fo_machine_t *ms;
    /* a multi-VM selector: the group round the first member of a group
     * resolved to, which every other member of that group takes too */
    char round_group[PTS_MAX_GROUP_NAME + 1];
    uint64_t round;
} fo_job_t;

static void fo_free(void *arg)
{
    fo_job_t *f = arg;
    tm_free(f->ms);
    tm_free(f);
}

bool api_failover_action(const char *action)
{
    return strcmp(action, "failover") == 0 || strcmp(action, "planned-failover") == 0 ||
           strcmp(action, "change-point") == 0 || strcmp(action, "commit") == 0;
}

/* ---- steps shared by the bodies ---------------------------------------------------- */

enum { S_PREREQ, S_SHUTDOWN, S_FAILOVER, S_START };               /* failover, planned */
enum { C_PREREQ, C_FAILOVER, C_START };                           /* change-point */
enum { K_PREREQ, K_CONSOLIDATE, K_STOP_REPLICATION, K_DELETE };   /* commit */

static const char *const fo_steps[] = {"prerequisites", "shutdown", "failover", "start"};
static const char *const cp_steps[] = {"prerequisites", "failover", "start"};
static const char *const commit_steps[] = {"prerequisites", "consolidate", "stop-replication", "delete-points"};

static const char *fo_code(int rc)
{
    return rc == TM_EINVAL ? "bad-selector" : rc == TM_ENOPOINT ? "no-point" : rc == TM_ENOTFOUND ? "unknown-machine"
                                            : rc == -ETIMEDOUT ? "timeout"
                                                               : "internal";
}

/* The machine's point for the selector: `latest` processes first and cuts. */
static int fo_resolve(fo_job_t *f, const char *machine, const char *selector, pts_point_t *pt, char *why,
                      size_t whylen)
{
    why[0] = '\0';
    if (strcmp(selector, "latest") == 0) {
        int rc = pts_cut_latest(f->a->pts, machine, FO_LATEST_TIMEOUT_MS, pt);
        if (rc)
            snprintf(why, whylen, "%s", rc == TM_ENOPOINT ? "nothing received from it can make a point yet"
                                        : rc == -ETIMEDOUT ? "processing did not catch up in time"
                                                           : tm_strerror(rc));
        return rc;
    }
    if (strncmp(selector, "latest-multivm-", 15) != 0)
        return pts_resolve(f->a->pts, machine, selector, pt, why, whylen);
    /* Members of one group resolved one after another could land on
     * different rounds when one is recorded in between: the first fixes
     * the round, the others take their point of that same round. */
    char group[PTS_MAX_GROUP_NAME + 1];
    if (pts_machine_group(f->a->pts, machine, group, sizeof group) != 0)
        return pts_resolve(f->a->pts, machine, selector, pt, why, whylen);
    if (!f->round || strcmp(group, f->round_group) != 0) {
        int rc = pts_resolve(f->a->pts, machine, selector, pt, why, whylen);
        if (rc == 0 && !f->round) {
            snprintf(f->round_group, sizeof f->round_group, "%s", group);
            f->round = pt->tag_id; /* a group point's member point carries the round as its tag id */
        }
        return rc;
    }
    pts_group_point_t *v;
    size_t n;
    int rc = pts_group_points(f->a->pts, group, 0, &v, &n);
    if (rc)
        return rc;
    rc = TM_ENOPOINT;
    for (size_t i = 0; i < n && rc == TM_ENOPOINT; i++) {
        if (v[i].round != f->round)
            continue;
        for (size_t k = 0; k < v[i].nmembers; k++) {
            if (strcmp(v[i].members[k].machine, machine) == 0) {
                char id[24];
                snprintf(id, sizeof id, "%" PRIu64, v[i].members[k].seq);
                rc = pts_resolve(f->a->pts, machine, id, pt, why, whylen);
            }
        }
    }
    pts_group_points_free(v, n);
    if (rc == TM_ENOPOINT && !why[0])
        snprintf(why, whylen, "group %s's round %" PRIu64 ", which the other members fail over to, has no point of "
                 "machine %s (it joined the group later)", group, f->round, machine);
    return rc;
}

/* The machine as the points stage knows it; fails the machine when unknown. */
static bool fo_machine(api_job_t *j, fo_job_t *f, size_t i, pts_machine_t *m)
{
    if (pts_machine(f->a->pts, f->ms[i].name, m) == 0)
        return true;
    api_job_fail(j, i, "unknown-machine", "machine %s has sent nothing to this appliance", f->ms[i].name);
    return false;
}

/* ---- failover and planned-failover --------------------------------------------------- */

static void fo_prereq(api_job_t *j, fo_job_t *f, size_t i)
{
    api_job_step(j, i, S_PREREQ, API_STEP_RUNNING, NULL);
    pts_machine_t m;
    if (!fo_machine(j, f, i, &m))
        return;
    if (m.failover == PTS_FO_COMMITTED) {
        api_job_fail(j, i, "conflict", "machine %s's failover was committed: it no longer replicates", m.name);
        return;
    }
    if (m.failover == PTS_FO_ACTIVE) {
        api_job_fail(j, i, "conflict",
                     "machine %s is already failed over (to point %" PRIu64 "): change-point or commit it",
                     m.name, m.failover_seq);
        return;
    }
    if (m.ndisks == 0) {
        api_job_fail(j, i, "no-point", "machine %s has no disks yet", m.name);
        return;
    }
    api_job_step(j, i, S_PREREQ, API_STEP_SUCCEEDED, "%u disk%s, %s", m.ndisks, m.ndisks == 1 ? "" : "s",
                 m.has_point ? "protected" : "no point yet");
}

/* The point a tag id made, if processed. */
static bool fo_tag_point(fo_job_t *f, const char *machine, uint64_t tag_id, pts_point_t *out)
{
    pts_query_t q = {.kinds = 1u << PTS_KIND_CRASH, .limit = 64};
    pts_point_t *pts = NULL;
    size_t n = 0;
    bool found = false;
    if (pts_points(f->a->pts, machine, &q, &pts, &n) == 0) {
        for (size_t k = 0; k < n && !found; k++) {
            if (pts[k].tag_id == tag_id) {
                *out = pts[k];
                found = true;
            }
        }
    }
    tm_free(pts);
    return found;
}

/* STOP every machine's agent, then wait for each one's final tag. */
static void fo_shutdown(api_job_t *j, fo_job_t *f)
{
    bool planned = strcmp(f->action, "planned-failover") == 0;
    char name[WIRE_MAX_NAME + 1], reason[128];
    snprintf(name, sizeof name, "%s-%" PRIu64, planned ? "planned-failover" : "failover", api_job_id(j));
    snprintf(reason, sizeof reason, "%s (job %" PRIu64 ") on the appliance", f->action, api_job_id(j));
    size_t waiting = 0;
    for (size_t i = 0; i < f->n; i++) {
        if (api_job_failed(j, i))
            continue;
        if (!f->shutdown) {
            api_job_step(j, i, S_SHUTDOWN, API_STEP_SKIPPED, "not asked");
            continue;
        }
        api_job_step(j, i, S_SHUTDOWN, API_STEP_RUNNING, "asking the agent to stop taking writes");
        int rc = fo_stop_agent(f->a, f->ms[i].name, name, reason, &f->ms[i].tag_id);
        if (rc == 0) {
            f->ms[i].stopped = true;
            waiting++;
            continue;
        }
        const char *why = rc == TM_ECLOSED || rc == -ENOTCONN ? "no agent of it is connected" : tm_strerror(rc);
        if (planned)
            api_job_fail(j, i, "source-unreachable",
                         "machine %s cannot be shut down: %s; a failover (not planned) can still run, losing "
                         "what was not sent",
                         f->ms[i].name, why);
        else
            api_job_step(j, i, S_SHUTDOWN, API_STEP_FAILED, "the source could not be shut down (%s); failing "
                                                            "over anyway", why);
    }
    uint64_t deadline = tm_now_ns() + (uint64_t)f->drain_s * 1000000000ull;
    while (waiting && !api_job_cancel_asked(j)) {
        int rc = pts_sync(f->a->pts, 500);
        for (size_t i = 0; i < f->n; i++) {
            fo_machine_t *m = &f->ms[i];
            if (!m->stopped || m->have_point || api_job_failed(j, i))
                continue;
            if (fo_tag_point(f, m->name, m->tag_id, &m->point)) {
                m->have_point = true;
                waiting--;
                api_job_step(j, i, S_SHUTDOWN, API_STEP_SUCCEEDED,
                             "the agent stopped; everything it sent is processed, up to sequence %" PRIu64,
                             m->point.seq);
            }
        }
        if (!waiting)
            break;
        if (tm_now_ns() > deadline || (rc && rc != -ETIMEDOUT)) {
            for (size_t i = 0; i < f->n; i++) {
                fo_machine_t *m = &f->ms[i];
                if (!m->stopped || m->have_point || api_job_failed(j, i))
                    continue;
                const char *why = rc && rc != -ETIMEDOUT ? tm_strerror(rc) : "time limit reached";
                if (planned)
                    api_job_fail(j, i, "timeout",
                                 "machine %s's agent did not finish sending within %u s (%s); it is resumed",
                                 m->name, f->drain_s, why);
                else
                    api_job_step(j, i, S_SHUTDOWN, API_STEP_FAILED,
                                 "the agent did not finish sending within %u s (%s); failing over anyway",
                                 f->drain_s, why);
            }
            break;
        }
    }
}

static void fo_failover_step(api_job_t *j, fo_job_t *f, size_t i)
{
    fo_machine_t *m = &f->ms[i];
    api_job_step(j, i, S_FAILOVER, API_STEP_RUNNING, NULL);
    bool planned = strcmp(f->action, "planned-failover") == 0;
    /* planned: the final tag's point, everything the source wrote (found
     * by the shutdown step). A failover that shut its source down first
     * still goes to the point it asked for: after the drain, `latest` is
     * that same final point, and latest-app is the newest app point. */
    if (!planned) {
        char why[256];
        int rc = fo_resolve(f, m->name, f->selector, &m->point, why, sizeof why);
        if (rc) {
            api_job_fail(j, i, fo_code(rc), "machine %s at %s: %s", m->name, f->selector,
                         why[0] ? why : tm_strerror(rc));
            return;
        }
        m->have_point = true;
    }
    api_job_point(j, i, &m->point);
    api_job_step(j, i, S_FAILOVER, API_STEP_SUCCEEDED, "point %" PRIu64, m->point.seq);
}

/* Raw images of the machine's disks at its point into f->out. */
static int fo_images(api_job_t *j, fo_job_t *f, size_t i, char *err, size_t errlen)
{
    pts_machine_t m;
    if (pts_machine(f->a->pts, f->ms[i].name, &m) != 0) {
        snprintf(err, errlen, "machine %s is gone", f->ms[i].name);
        return TM_ENOTFOUND;
    }
    uint64_t total = 0, base = 0;
    for (unsigned d = 0; d < m.ndisks; d++)
        total += m.disks[d].size;
    for (unsigned d = 0; d < m.ndisks; d++) {
        char path[4096 + 2 * WIRE_MAX_NAME + 8], bpath[4096];
        snprintf(path, sizeof path, "%s/%s-%s.raw", f->out, m.name, m.disks[d].name);
        pts_base_path(f->a->pts, m.name, m.disks[d].name, bpath, sizeof bpath);
        tgt_view_t v = {.ix = pts_index(f->a->pts), .jnl = f->a->jnl, .machine = m.name, .mid = m.id,
                        .disk = (uint16_t)d, .disk_name = m.disks[d].name, .size = m.disks[d].size,
                        .seq = f->ms[i].point.seq, .base_path = bpath};
        api_job_progress(j, base, total);
        int rc = tgt_write_image(&v, path, NULL, NULL, NULL, err, errlen);
        if (rc)
            return rc;
        base += m.disks[d].size;
        api_job_progress(j, base, total);
    }
    return 0;
}

static void fo_start_step(api_job_t *j, fo_job_t *f, size_t i)
{
    fo_machine_t *m = &f->ms[i];
    char err[512];
    api_job_step(j, i, S_START, API_STEP_RUNNING, "serving the disks at point %" PRIu64, m->point.seq);
    /* recorded first: a crash from here on serves the disks again at restart */
    int rc = pts_failover_set(f->a->pts, m->name, PTS_FO_ACTIVE, m->point.seq, tm_now_ns());
    if (rc) {
        api_job_fail(j, i, rc == TM_ENOPOINT ? "no-point" : "internal", "machine %s: the failover cannot be "
                     "recorded: %s", m->name, rc == TM_ENOPOINT ? "the point left the retention window" : tm_strerror(rc));
        return;
    }
    rc = fo_serve(f->a, m->name, m->point.seq, err, sizeof err);
    if (rc) {
        pts_failover_set(f->a->pts, m->name, PTS_FO_NONE, 0, 0);
        api_job_fail(j, i, "internal", "machine %s: its disks cannot be served: %s", m->name, err);
        return;
    }
    m->served = true;
    api_job_exports(j, i, fo_exports_json(f->a, m->name, "failover"));
    if (f->out[0]) {
        api_job_step(j, i, S_START, API_STEP_RUNNING, "served; writing raw images into %s", f->out);
        rc = fo_images(j, f, i, err, sizeof err);
        if (rc) {
            /* the disks are served and the failover stands: only the copies failed */
            api_job_fail(j, i, rc == TM_ECORRUPT ? "corrupt" : "internal",
                         "machine %s is failed over and served, but its raw images failed: %s", m->name, err);
            return;
        }
    }
    api_job_step(j, i, S_START, API_STEP_SUCCEEDED, "served as MACHINE/DISK@failover at point %" PRIu64 "%s%s",
                 m->point.seq, f->out[0] ? ", raw images in " : "", f->out);
}

/* Undo what this job did to machine i: exports, overlays, record, agent. */
static void fo_undo(fo_job_t *f, size_t i)
{
    fo_machine_t *m = &f->ms[i];
    char err[512];
    if (m->served) {
        int rc = fo_unserve(f->a, m->name, true, err, sizeof err);
        if (rc == -ESHUTDOWN)
            return; /* the appliance stops: the restart serves what the index says */
        if (rc && rc != TM_ENOTFOUND)
            tm_warn("failover of %s: undoing: %s", m->name, err);
        if ((rc = pts_failover_set(f->a->pts, m->name, PTS_FO_NONE, 0, 0)) != 0)
            tm_warn("failover of %s: undoing: the record stays: %s", m->name, tm_strerror(rc));
        m->served = false;
    }
    if (m->stopped) {
        int rc = fo_resume_agent(f->a, m->name);
        if (rc && rc != -ESHUTDOWN)
            tm_warn("failover of %s: its agent could not be resumed (%s): it resumes when it reconnects",
                    m->name, tm_strerror(rc));
        m->stopped = false;
    }
}

static bool fo_cancelled(api_job_t *j, fo_job_t *f)
{
    if (!api_job_cancel_asked(j))
        return false;
    for (size_t i = 0; i < f->n; i++)
        fo_undo(f, i);
    api_job_cancelled_ok(j);
    return true;
}

static void fo_run_failover(api_job_t *j, void *arg)
{
    fo_job_t *f = arg;
    for (size_t i = 0; i < f->n; i++)
        fo_prereq(j, f, i);
    if (fo_cancelled(j, f))
        return;
    fo_shutdown(j, f);
    if (fo_cancelled(j, f))
        return;
    for (size_t i = 0; i < f->n; i++) {
        if (!api_job_failed(j, i))
            fo_failover_step(j, f, i);
        if (fo_cancelled(j, f))
            return;
    }
    for (size_t i = 0; i < f->n; i++) {
        if (!api_job_failed(j, i))
            fo_start_step(j, f, i);
        if (fo_cancelled(j, f))
            return;
    }
    /* a planned failover that failed must not leave its source stopped */
    for (size_t i = 0; i < f->n; i++) {
        if (api_job_failed(j, i) && !f->ms[i].served)
            fo_undo(f, i);
    }
}

/* ---- change-point ------------------------------------------------------------------- */

static void fo_run_change_point(api_job_t *j, void *arg)
{
    fo_job_t *f = arg;
    for (size_t i = 0; i < f->n; i++) {
        fo_machine_t *m = &f->ms[i];
        pts_machine_t pm;
        char err[512], why[256];
        api_job_step(j, i, C_PREREQ, API_STEP_RUNNING, NULL);
        if (!fo_machine(j, f, i, &pm))
            continue;
        if (pm.failover != PTS_FO_ACTIVE) {
            api_job_fail(j, i, "conflict", pm.failover == PTS_FO_COMMITTED
                                               ? "machine %s's failover is committed: its points are gone"
                                               : "machine %s is not failed over",
                         m->name);
            continue;
        }
        api_job_step(j, i, C_PREREQ, API_STEP_SUCCEEDED, "failed over to point %" PRIu64, pm.failover_seq);
        api_job_step(j, i, C_FAILOVER, API_STEP_RUNNING, NULL);
        int rc = fo_resolve(f, m->name, f->selector, &m->point, why, sizeof why);
        if (rc) {
            api_job_fail(j, i, fo_code(rc), "machine %s at %s: %s", m->name, f->selector,
                         why[0] ? why : tm_strerror(rc));
            continue;
        }
        api_job_point(j, i, &m->point);
        api_job_step(j, i, C_FAILOVER, API_STEP_SUCCEEDED, "point %" PRIu64, m->point.seq);
        api_job_step(j, i, C_START, API_STEP_RUNNING, "switching the disks from point %" PRIu64 " to %" PRIu64,
                     pm.failover_seq, m->point.seq);
        /* writes made to the failed-over disks belong to the old point: they go */
        rc = fo_unserve(f->a, m->name, true, err, sizeof err);
        if (rc && rc != TM_ENOTFOUND) {
            api_job_fail(j, i, "internal", "machine %s: its disks cannot be switched: %s", m->name, err);
            continue;
        }
        rc = pts_failover_set(f->a->pts, m->name, PTS_FO_ACTIVE, m->point.seq, tm_now_ns());
        if (rc == 0)
            rc = fo_serve(f->a, m->name, m->point.seq, err, sizeof err);
        else
            snprintf(err, sizeof err, "the change cannot be recorded: %s", tm_strerror(rc));
        if (rc) {
            api_job_fail(j, i, "internal", "machine %s: %s", m->name, err);
            continue;
        }
        api_job_exports(j, i, fo_exports_json(f->a, m->name, "failover"));
        api_job_step(j, i, C_START, API_STEP_SUCCEEDED, "served at point %" PRIu64, m->point.seq);
    }
}

/* ---- commit --------------------------------------------------------------------------- */

static void fo_commit_progress(void *arg, uint64_t done, uint64_t total)
{
    api_job_progress(arg, done, total);
}

static void fo_commit_one(api_job_t *j, fo_job_t *f, size_t i)
{
    fo_machine_t *m = &f->ms[i];
    pts_machine_t pm;
    char err[512];
    api_job_step(j, i, K_PREREQ, API_STEP_RUNNING, NULL);
    if (!fo_machine(j, f, i, &pm))
        return;
    if (pm.failover != PTS_FO_ACTIVE) {
        api_job_fail(j, i, "conflict", pm.failover == PTS_FO_COMMITTED ? "machine %s's failover is already committed"
                                                                       : "machine %s is not failed over",
                     m->name);
        return;
    }
    uint64_t seq;
    int rc = fo_session_point(f->a, m->name, &seq);
    if (rc) {
        api_job_fail(j, i, "internal", "machine %s is failed over but its disks are not served (%s)", m->name,
                     tm_strerror(rc));
        return;
    }
    api_job_step(j, i, K_PREREQ, API_STEP_SUCCEEDED, "failed over to point %" PRIu64, pm.failover_seq);

    api_job_step(j, i, K_CONSOLIDATE, API_STEP_RUNNING, "copying the point's data into the failed-over disks");
    rc = fo_consolidate(f->a, m->name, fo_commit_progress, j, err, sizeof err);
    if (rc) {
        api_job_fail(j, i, rc == TM_ECORRUPT ? "corrupt" : "internal",
                     "machine %s: its disks cannot be made whole: %s (it stays failed over; commit again)",
                     m->name, err);
        return;
    }
    api_job_step(j, i, K_CONSOLIDATE, API_STEP_SUCCEEDED, "the failed-over disks need no point any more");

    api_job_step(j, i, K_STOP_REPLICATION, API_STEP_RUNNING, NULL);
    char reason[160];
    snprintf(reason, sizeof reason, "the failover of %s was committed (job %" PRIu64 ")", m->name, api_job_id(j));
    rc = fo_retire_agent(f->a, m->name, reason);
    if (rc == 0)
        rc = pts_sync(f->a->pts, FO_LATEST_TIMEOUT_MS); /* what it sent before is processed */
    if (rc) {
        api_job_fail(j, i, "internal", "machine %s: replication cannot be stopped: %s", m->name, tm_strerror(rc));
        return;
    }
    api_job_step(j, i, K_STOP_REPLICATION, API_STEP_SUCCEEDED, "its agent is refused from now on");

    api_job_step(j, i, K_DELETE, API_STEP_RUNNING, NULL);
    uint64_t deadline = tm_now_ns() + FO_BUSY_WAIT_MS * 1000000ull;
    while ((rc = pts_commit_machine(f->a->pts, m->name, tm_now_ns())) == -EBUSY && tm_now_ns() < deadline) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc) {
        api_job_fail(j, i, rc == -EBUSY ? "busy" : "internal",
                     rc == -EBUSY ? "machine %s: its points are still being read (NBD exports or jobs): close them "
                                    "and commit again"
                                  : "machine %s: its points cannot be deleted: %s",
                     m->name, tm_strerror(rc));
        return;
    }
    api_job_step(j, i, K_DELETE, API_STEP_SUCCEEDED, "its points are deleted and its journal space released");
}

static void fo_run_commit(api_job_t *j, void *arg)
{
    fo_job_t *f = arg;
    for (size_t i = 0; i < f->n; i++)
        fo_commit_one(j, f, i);
}

/* ---- the request ------------------------------------------------------------------------ */

static bool fo_machine_list(api_v1_t *a, tm_http_req_t *req, json_t *one, json_t *many, fo_job_t *f);

/* machines: "machine" (a string), "machines" (an array of them), or
 * "group" (a replication group: its members). */
static bool fo_machines(api_v1_t *a, tm_http_req_t *req, json_t *body, fo_job_t *f)
{
    json_t *one = json_object_get(body, "machine"), *many = json_object_get(body, "machines");
    json_t *group = json_object_get(body, "group"), *members = NULL;
    if (group && !one && !many) {
        json_t *g = json_is_string(group) && a->cns ? cns_group_json(a->cns, json_string_value(group)) : NULL;
        if (!g) {
            tm_http_reply_error(req, json_is_string(group) ? 404 : 400,
                                json_is_string(group) ? "unknown-group" : "bad-request",
                                json_is_string(group) ? "there is no replication group '%s' on this appliance"
                                                      : "\"group\" must be a group's name%s",
                                json_is_string(group) ? json_string_value(group) : "");
            return false;
        }
        members = json_incref(json_object_get(g, "members"));
        json_decref(g);
        many = members;
    }
    if ((one && many) || (!one && !many) || (group && (one || members != many)) || (one && !json_is_string(one)) ||
        (many && (!json_is_array(many) || json_array_size(many) == 0))) {
        json_decref(members);
        tm_http_reply_error(req, 400, "bad-request",
                            "the job needs one of \"machine\" (a name), \"machines\" (a non-empty array of names) "
                            "or \"group\" (a replication group's name)");
        return false;
    }
    bool ok = fo_machine_list(a, req, one, many, f);
    json_decref(members);
    return ok;
}

/* The job's machines from one name or an array of them. */
static bool fo_machine_list(api_v1_t *a, tm_http_req_t *req, json_t *one, json_t *many, fo_job_t *f)
{
    size_t n = one ? 1 : json_array_size(many);
    if (n > 4096) {
        tm_http_reply_error(req, 400, "bad-request", "at most 4096 machines per job");
        return false;
    }
    f->ms = tm_calloc(n, sizeof *f->ms);
    if (!f->ms) {
        tm_http_reply_error(req, 500, "internal", "out of memory");
        return false;
    }
    f->n = n;
    for (size_t i = 0; i < n; i++) {
        json_t *v = one ? one : json_array_get(many, i);
        if (!json_is_string(v)) {
            tm_http_reply_error(req, 400, "bad-request", "machines[%zu] is not a string", i);
            return false;
        }
        const char *name = json_string_value(v);
        if (!api_machine_known(a, req, name))
            return false;
        for (size_t k = 0; k < i; k++) {
            if (strcmp(f->ms[k].name, name) == 0) {
                tm_http_reply_error(req, 400, "bad-request", "machine %s is named twice", name);
                return false;
            }
        }
        snprintf(f->ms[i].name, sizeof f->ms[i].name, "%s", name);
    }
    return true;
}

/* options: {"shutdown": bool, "out": "/abs/folder", "drain_seconds": n}. */
static bool fo_options(tm_http_req_t *req, json_t *body, fo_job_t *f)
{
    f->drain_s = FO_DRAIN_DEFAULT_S;
    json_t *o = json_object_get(body, "options");
    if (!o)
        return true;
    if (!json_is_object(o)) {
        tm_http_reply_error(req, 400, "bad-request", "options must be an object");
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (strcmp(k, "shutdown") == 0 && json_is_boolean(v)) {
            f->shutdown = json_is_true(v);
        } else if (strcmp(k, "drain_seconds") == 0 && json_is_integer(v) && json_integer_value(v) >= 1 &&
                   json_integer_value(v) <= FO_DRAIN_MAX_S) {
            f->drain_s = (unsigned)json_integer_value(v);
        } else if (strcmp(k, "out") == 0 && json_is_string(v)) {
            const char *out = json_string_value(v);
            struct stat st;
            if (out[0] != '/' || strlen(out) >= sizeof f->out || stat(out, &st) != 0 || !S_ISDIR(st.st_mode) ||
                access(out, W_OK | X_OK) != 0) {
                tm_http_reply_error(req, 400, "bad-request",
                                    "options.out must be an absolute path to a folder the appliance may write "
                                    "into: %s is not",
                                    out);
                return false;
            }
            snprintf(f->out, sizeof f->out, "%s", out);
        } else {
            tm_http_reply_error(req, 400, "bad-request",
                                "options.%s is not one this job takes: shutdown (true/false), out (a folder), "
                                "drain_seconds (1 to %u)",
                                k, FO_DRAIN_MAX_S);
            return false;
        }
    }
    return true;
}

void api_failover_post(api_v1_t *a, tm_http_req_t *req, json_t *body, const char *action)
{
    if (!a->exports || !a->loopq) {
        tm_http_reply_error(req, 409, "conflict", "this appliance serves no NBD exports: no failover");
        return;
    }
    fo_job_t *f = tm_calloc(1, sizeof *f);
    if (!f) {
        tm_http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    f->a = a;
    snprintf(f->action, sizeof f->action, "%s", action);
    bool commit = strcmp(action, "commit") == 0, planned = strcmp(action, "planned-failover") == 0;
    if (!fo_machines(a, req, body, f) || !fo_options(req, body, f)) {
        fo_free(f);
        return;
    }
    json_t *pt = json_object_get(body, "point");
    if (!commit && !planned) {
        if (!pt || !json_is_string(pt) || strlen(json_string_value(pt)) >= sizeof f->selector) {
            tm_http_reply_error(req, 400, "bad-request", "the job needs \"point\" (a selector: latest, "
                                                         "latest-processed, latest-app, a point id, @TIME)");
            fo_free(f);
            return;
        }
        snprintf(f->selector, sizeof f->selector, "%s", json_string_value(pt));
    } else if (pt) {
        tm_http_reply_error(req, 400, "bad-request",
                            planned ? "a planned failover takes no point: it fails over to the source's final "
                                      "point"
                                    : "a commit takes no point: it commits the point failed over to");
        fo_free(f);
        return;
    }
    if (planned)
        f->shutdown = true;
    const char **names = tm_calloc(f->n, sizeof *names);
    if (!names) {
        fo_free(f);
        tm_http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    for (size_t i = 0; i < f->n; i++)
        names[i] = f->ms[i].name;
    uint64_t id;
    int rc;
    if (commit)
        rc = api_jobs_run(a->jobs, action, NULL, names, f->n, commit_steps, 4, false, fo_run_commit, f, fo_free,
                          &id);
    else if (strcmp(action, "change-point") == 0)
        rc = api_jobs_run(a->jobs, action, f->selector, names, f->n, cp_steps, 3, false, fo_run_change_point, f,
                          fo_free, &id);
    else
        rc = api_jobs_run(a->jobs, action, planned ? "final" : f->selector, names, f->n, fo_steps, 4, true,
                          fo_run_failover, f, fo_free, &id);
    tm_free(names);
    if (rc) {
        tm_http_reply_error(req, 500, "internal", "the job could not start: %s", tm_strerror(rc));
        return;
    }
    char loc[64];
    snprintf(loc, sizeof loc, "/v1/jobs/%" PRIu64, id);
    tm_http_add_header(req, "Location", loc);
    tm_http_reply_json(req, 201, json_pack("{s:o}", "job", api_jobs_get(a->jobs, id)));
}
