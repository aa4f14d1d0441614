/* The failover jobs' calls into the loop (fo_loop.h). */
#include "api/fo_loop.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/loop_call.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"

/* The arguments and results of one call. */
typedef struct fo_call {
    api_v1_t *a;
    const char *machine;
    const char *name;
    const char *reason;
    uint64_t seq;
    bool remove;
    uint64_t tag_id;
    uint64_t done, total;
    char msg[512];
} fo_call_t;

static void loop_stop_agent(api_call_t *c, void *arg)
{
    fo_call_t *f = arg;
    uint64_t id = tm_now_ns();
    if (id <= f->a->next_tag_id)
        id = f->a->next_tag_id + 1;
    f->a->next_tag_id = id;
    f->tag_id = id;
    api_call_done(c, ingest_request_stop(f->a->ingest, f->machine, id, f->name, f->reason));
}

int fo_stop_agent(api_v1_t *a, const char *machine, const char *name, const char *reason, uint64_t *tag_id)
{
    fo_call_t f = {.a = a, .machine = machine, .name = name, .reason = reason};
    int rc = api_loop_call(a->loopq, loop_stop_agent, &f);
    *tag_id = f.tag_id;
    return rc;
}

static void loop_resume_agent(api_call_t *c, void *arg)
{
    fo_call_t *f = arg;
    api_call_done(c, ingest_request_resume(f->a->ingest, f->machine));
}

int fo_resume_agent(api_v1_t *a, const char *machine)
{
    fo_call_t f = {.a = a, .machine = machine};
    return api_loop_call(a->loopq, loop_resume_agent, &f);
}

static void loop_retire_agent(api_call_t *c, void *arg)
{
    fo_call_t *f = arg;
    api_call_done(c, ingest_retire_machine(f->a->ingest, f->machine, f->reason));
}

int fo_retire_agent(api_v1_t *a, const char *machine, const char *reason)
{
    fo_call_t f = {.a = a, .machine = machine, .reason = reason};
    return api_loop_call(a->loopq, loop_retire_agent, &f);
}

/* tgt_failover_start's end, on the loop: the call it belongs to ends with
 * tgt's sentence. It may come after the caller gave up (a shutdown), so it
 * touches only the call, never the caller's fo_call_t. */
static void on_served_msg(void *arg, int status, uint64_t seq, const char *msg)
{
    (void)seq;
    api_call_done_msg(arg, status, status ? msg : NULL);
}

static void loop_serve(api_call_t *c, void *arg)
{
    fo_call_t *f = arg;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/failover", f->a->data_dir);
    int rc = tgt_failover_start(f->a->exports, f->machine, f->seq, dir, false, on_served_msg, c, f->msg,
                                sizeof f->msg);
    if (rc)
        api_call_done_msg(c, rc, f->msg);
}

int fo_serve(api_v1_t *a, const char *machine, uint64_t seq, char *err, size_t errlen)
{
    fo_call_t f = {.a = a, .machine = machine, .seq = seq};
    char msg[API_CALL_MSG];
    int rc = api_loop_call_msg(a->loopq, loop_serve, &f, msg, sizeof msg);
    if (rc)
        snprintf(err, errlen, "%s", msg[0] ? msg : tm_strerror(rc));
    return rc;
}

static void loop_unserve(api_call_t *c, void *arg)
{
    fo_call_t *f = arg;
    api_call_done(c, tgt_failover_stop(f->a->exports, f->machine, f->remove, f->msg, sizeof f->msg));
}

int fo_unserve(api_v1_t *a, const char *machine, bool remove, char *err, size_t errlen)
{
    fo_call_t f = {.a = a, .machine = machine, .remove = remove};
    int rc = api_loop_call(a->loopq, loop_unserve, &f);
    if (rc)
        snprintf(err, errlen, "%s", f.msg[0] ? f.msg : tm_strerror(rc));
    return rc;
}

static void loop_session_point(api_call_t *c, void *arg)
{
    fo_call_t *f = arg;
    api_call_done(c, tgt_failover_point(f->a->exports, f->machine, &f->seq));
}

int fo_session_point(api_v1_t *a, const char *machine, uint64_t *seq)
{
    fo_call_t f = {.a = a, .machine = machine};
    int rc = api_loop_call(a->loopq, loop_session_point, &f);
    *seq = f.seq;
    return rc;
}

/* Consolidation: started by one call, ended by tgt's callback, which may
 * come long after; the job's thread polls progress meanwhile. */
typedef struct fo_consol {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ended;
    int status;
    int refs; /* the job's thread and tgt's callback */
    char msg[512];
} fo_consol_t;

static void consol_unref(fo_consol_t *k) /* with mu held; unlocks */
{
    bool last = --k->refs == 0;
    pthread_mutex_unlock(&k->mu);
    if (last) {
        pthread_cond_destroy(&k->cv);
        pthread_mutex_destroy(&k->mu);
        tm_free(k);
    }
}

static void on_consolidated(void *arg, int status, uint64_t seq, const char *msg)
{
    fo_consol_t *k = arg;
    (void)seq;
    pthread_mutex_lock(&k->mu);
    k->ended = true;
    k->status = status;
    if (status && msg)
        snprintf(k->msg, sizeof k->msg, "%s", msg);
    pthread_cond_broadcast(&k->cv);
    consol_unref(k);
}

typedef struct fo_consol_call {
    fo_call_t f;
    fo_consol_t *k;
} fo_consol_call_t;

static void loop_consolidate(api_call_t *c, void *arg)
{
    fo_consol_call_t *cc = arg;
    pthread_mutex_lock(&cc->k->mu);
    cc->k->refs++; /* the callback's */
    pthread_mutex_unlock(&cc->k->mu);
    int rc = tgt_failover_commit(cc->f.a->exports, cc->f.machine, on_consolidated, cc->k, cc->f.msg,
                                 sizeof cc->f.msg);
    if (rc) {
        pthread_mutex_lock(&cc->k->mu);
        consol_unref(cc->k); /* no callback comes */
    }
    api_call_done(c, rc);
}

static void loop_progress(api_call_t *c, void *arg)
{
    fo_call_t *f = arg;
    api_call_done(c, tgt_failover_progress(f->a->exports, f->machine, &f->done, &f->total));
}

int fo_consolidate(api_v1_t *a, const char *machine, void (*progress)(void *arg, uint64_t done, uint64_t total),
                   void *arg, char *err, size_t errlen)
{
    fo_consol_t *k = tm_calloc(1, sizeof *k);
    if (!k)
        return -ENOMEM;
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    k->refs = 1;
    fo_consol_call_t cc = {.f = {.a = a, .machine = machine}, .k = k};
    int rc = api_loop_call(a->loopq, loop_consolidate, &cc);
    if (rc) {
        snprintf(err, errlen, "%s", cc.f.msg[0] ? cc.f.msg : tm_strerror(rc));
        pthread_mutex_lock(&k->mu);
        consol_unref(k);
        return rc;
    }
    pthread_mutex_lock(&k->mu);
    while (!k->ended) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&k->cv, &k->mu, &ts);
        if (k->ended)
            break;
        pthread_mutex_unlock(&k->mu);
        fo_call_t f = {.a = a, .machine = machine};
        rc = api_loop_call(a->loopq, loop_progress, &f);
        pthread_mutex_lock(&k->mu);
        if (rc == -ESHUTDOWN)
            break; /* the appliance stops; the fill goes on from where it is at the next commit */
        if (rc == 0 && progress)
            progress(arg, f.done, f.total);
    }
    rc = k->ended ? k->status : -ESHUTDOWN;
    if (rc)
        snprintf(err, errlen, "%s", k->msg[0] ? k->msg : tm_strerror(rc));
    consol_unref(k);
    return rc;
}

json_t *fo_exports_json(api_v1_t *a, const char *machine, const char *suffix)
{
    json_t *ex = json_array();
    pts_machine_t m;
    if (!ex || pts_machine(a->pts, machine, &m) != 0)
        return ex;
    for (unsigned d = 0; d < m.ndisks; d++) {
        char name[2 * WIRE_MAX_NAME + 16], uri[2 * WIRE_MAX_NAME + 100];
        snprintf(name, sizeof name, "%s/%s@%s", machine, m.disks[d].name, suffix);
        snprintf(uri, sizeof uri, "nbd://%s/%s", a->nbd ? a->nbd : "?", name);
        json_array_append_new(ex, json_pack("{s:s,s:s,s:s}", "disk", m.disks[d].name, "name", name, "uri", uri));
    }
    return ex;
}
