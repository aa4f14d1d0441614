/*
 * The job table and the materialize action (jobs.h).
 */
#include "api/jobs.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "api/v1.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "target/image.h"

typedef enum { JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED } job_state_t;

/* One machine of a job over machines (api_jobs_run). */
typedef struct job_machine {
    char name[WIRE_MAX_NAME + 1];
    api_step_state_t step[API_JOB_MAX_STEPS];
    char detail[API_JOB_MAX_STEPS][160];
    bool failed;
    char err_code[32];
    char err_msg[512];
    bool has_point;
    pts_point_t point;
    json_t *exports;
} job_machine_t;

typedef struct job {
    struct job *next; /* newer to older */
    uint64_t id;
    api_jobs_t *js;
    char action[24];
    api_materialize_t req; /* machine and selector for every action; out for materialize */
    pthread_t thread;
    bool joined;           /* no thread to join (done, or a job without one) */
    atomic_bool cancel;
    /* under js->mu */
    job_state_t state;
    uint64_t created_ns, finished_ns;
    bool has_point;
    pts_point_t point;
    uint64_t done, total;
    json_t *files;
    json_t *exports; /* test-failover: the writable exports, NULL otherwise */
    char err_code[32];
    char err_msg[512];
    uint64_t disk_base; /* bytes of the disks before the current one */
    /* api_jobs_run */
    api_job_fn fn;
    void *fn_arg;
    void (*free_arg)(void *);
    bool cancellable;
    bool cancelled_ok;
    size_t nsteps;
    const char *steps[API_JOB_MAX_STEPS];
    size_t nm;
    job_machine_t *ms;
} job_t;

struct api_jobs {
    jnl_t *jnl;
    pts_t *pts;
    pthread_mutex_t mu;
    job_t *head;
    size_t count;
    uint64_t next_id;
    uint64_t n_ok, n_failed;
};

int api_jobs_new(jnl_t *jnl, pts_t *pts, api_jobs_t **out)
{
    api_jobs_t *js = tm_calloc(1, sizeof *js);
    if (!js)
        return -ENOMEM;
    js->jnl = jnl;
    js->pts = pts;
    js->next_id = 1;
    pthread_mutex_init(&js->mu, NULL);
    *out = js;
    return 0;
}

static void job_free(job_t *j)
{
    json_decref(j->files);
    json_decref(j->exports);
    for (size_t i = 0; i < j->nm; i++)
        json_decref(j->ms[i].exports);
    tm_free(j->ms);
    tm_free(j);
}

void api_jobs_free(api_jobs_t *js)
{
    if (!js)
        return;
    pthread_mutex_lock(&js->mu);
    for (job_t *j = js->head; j; j = j->next)
        atomic_store(&j->cancel, true);
    pthread_mutex_unlock(&js->mu);
    job_t *j = js->head;
    while (j) {
        job_t *next = j->next;
        if (!j->joined)
            pthread_join(j->thread, NULL);
        job_free(j);
        j = next;
    }
    pthread_mutex_destroy(&js->mu);
    tm_free(js);
}

static void job_progress(void *arg, uint64_t done)
{
    job_t *j = arg;
    pthread_mutex_lock(&j->js->mu);
    j->done = j->disk_base + done;
    pthread_mutex_unlock(&j->js->mu);
}

static void job_fail(job_t *j, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void job_fail(job_t *j, const char *code, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&j->js->mu);
    snprintf(j->err_code, sizeof j->err_code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(j->err_msg, sizeof j->err_msg, fmt, ap);
    va_end(ap);
    j->state = JOB_FAILED;
    j->finished_ns = tm_now_ns();
    j->js->n_failed++;
    pthread_mutex_unlock(&j->js->mu);
    tm_log(TM_LOG_WARN, "job %" PRIu64 " (materialize %s at %s) failed: %s", j->id, j->req.machine,
           j->req.selector, j->err_msg);
}

static void *job_materialize(void *arg)
{
    job_t *j = arg;
    api_jobs_t *js = j->js;
    char why[256];
    pts_point_t pt;
    int rc = pts_resolve(js->pts, j->req.machine, j->req.selector, &pt, why, sizeof why);
    if (rc) {
        const char *code = rc == TM_EINVAL ? "bad-selector" : rc == TM_ENOPOINT ? "no-point"
                           : rc == TM_ENOTFOUND                 ? "unknown-machine"
                                                                : "internal";
        job_fail(j, code, "%s", why[0] ? why : tm_strerror(rc));
        return NULL;
    }
    pts_machine_t m;
    if (pts_machine(js->pts, j->req.machine, &m) != 0) {
        job_fail(j, "unknown-machine", "machine %s is gone", j->req.machine);
        return NULL;
    }
    uint64_t total = 0;
    for (unsigned d = 0; d < m.ndisks; d++)
        total += m.disks[d].size;
    pthread_mutex_lock(&js->mu);
    j->point = pt;
    j->has_point = true;
    j->total = total;
    pthread_mutex_unlock(&js->mu);
    /* retention must not fold past the point while it is read */
    if (pts_pin(js->pts, m.id, pt.seq) != 0) {
        job_fail(j, "no-point", "point %" PRIu64 " of %s went past the retention horizon", pt.seq, m.name);
        return NULL;
    }
    for (unsigned d = 0; d < m.ndisks; d++) {
        char path[4096 + 2 * WIRE_MAX_NAME], base[4096];
        snprintf(path, sizeof path, "%s/%s.raw", j->req.out, m.disks[d].name);
        pts_base_path(js->pts, m.name, m.disks[d].name, base, sizeof base);
        tgt_view_t v = {.ix = pts_index(js->pts), .jnl = js->jnl, .machine = m.name, .mid = m.id,
                        .disk = (uint16_t)d, .disk_name = m.disks[d].name, .size = m.disks[d].size,
                        .seq = pt.seq, .base_path = base};
        char err[512];
        rc = tgt_write_image(&v, path, job_progress, j, &j->cancel, err, sizeof err);
        if (rc) {
            pts_unpin(js->pts, m.id, pt.seq);
            job_fail(j, rc == TM_ECORRUPT ? "corrupt" : "internal", "%s", err);
            return NULL;
        }
        pthread_mutex_lock(&js->mu);
        json_array_append_new(j->files, json_string(path));
        j->disk_base += m.disks[d].size;
        j->done = j->disk_base;
        pthread_mutex_unlock(&js->mu);
    }
    pts_unpin(js->pts, m.id, pt.seq);
    pthread_mutex_lock(&js->mu);
    j->state = JOB_SUCCEEDED;
    j->finished_ns = tm_now_ns();
    js->n_ok++;
    pthread_mutex_unlock(&js->mu);
    tm_log(TM_LOG_INFO, "job %" PRIu64 ": materialized %s at point %" PRIu64 " into %s", j->id, m.name, pt.seq,
           j->req.out);
    return NULL;
}

/* Forget the oldest finished jobs past API_JOBS_KEEP. Under mu. */
static void jobs_trim(api_jobs_t *js)
{
    if (js->count <= API_JOBS_KEEP)
        return;
    job_t **pp = &js->head;
    size_t seen = 0;
    while (*pp) {
        job_t *j = *pp;
        if (++seen > API_JOBS_KEEP && j->state != JOB_RUNNING) {
            *pp = j->next;
            if (!j->joined)
                pthread_join(j->thread, NULL); /* finished: returns at once */
            job_free(j);
            js->count--;
            continue;
        }
        pp = &j->next;
    }
}

int api_jobs_materialize(api_jobs_t *js, const api_materialize_t *m, uint64_t *id)
{
    job_t *j = tm_calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->files = json_array();
    if (!j->files) {
        tm_free(j);
        return -ENOMEM;
    }
    j->js = js;
    j->req = *m;
    snprintf(j->action, sizeof j->action, "materialize");
    j->created_ns = tm_now_ns();
    atomic_init(&j->cancel, false);
    pthread_mutex_lock(&js->mu);
    j->id = js->next_id++;
    int rc = pthread_create(&j->thread, NULL, job_materialize, j);
    if (rc) {
        pthread_mutex_unlock(&js->mu);
        job_free(j);
        return -rc;
    }
    j->next = js->head;
    js->head = j;
    js->count++;
    jobs_trim(js);
    *id = j->id;
    pthread_mutex_unlock(&js->mu);
    return 0;
}

int api_jobs_begin(api_jobs_t *js, const char *action, const char *machine, const char *selector, uint64_t *id)
{
    job_t *j = tm_calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->files = json_array();
    if (!j->files) {
        tm_free(j);
        return -ENOMEM;
    }
    j->js = js;
    j->joined = true; /* no thread */
    snprintf(j->action, sizeof j->action, "%s", action);
    snprintf(j->req.machine, sizeof j->req.machine, "%s", machine);
    snprintf(j->req.selector, sizeof j->req.selector, "%s", selector ? selector : "");
    j->created_ns = tm_now_ns();
    atomic_init(&j->cancel, false);
    pthread_mutex_lock(&js->mu);
    j->id = js->next_id++;
    j->next = js->head;
    js->head = j;
    js->count++;
    jobs_trim(js);
    *id = j->id;
    pthread_mutex_unlock(&js->mu);
    return 0;
}

void api_jobs_end(api_jobs_t *js, uint64_t id, const pts_point_t *pt, json_t *exports, const char *code,
                  const char *msg)
{
    pthread_mutex_lock(&js->mu);
    job_t *j = js->head;
    while (j && j->id != id)
        j = j->next;
    if (j && j->state == JOB_RUNNING) {
        if (pt) {
            j->point = *pt;
            j->has_point = true;
        }
        json_decref(j->exports);
        j->exports = exports;
        exports = NULL;
        j->finished_ns = tm_now_ns();
        if (code) {
            snprintf(j->err_code, sizeof j->err_code, "%s", code);
            snprintf(j->err_msg, sizeof j->err_msg, "%s", msg ? msg : "");
            j->state = JOB_FAILED;
            js->n_failed++;
        } else {
            j->state = JOB_SUCCEEDED;
            js->n_ok++;
        }
    }
    pthread_mutex_unlock(&js->mu);
    json_decref(exports);
}

static const char *job_state_name(job_state_t s)
{
    return s == JOB_RUNNING ? "running" : s == JOB_SUCCEEDED ? "succeeded" : s == JOB_CANCELLED ? "cancelled"
                                                                                                : "failed";
}

static const char *step_state_name(api_step_state_t s)
{
    static const char *const names[] = {"pending", "running", "succeeded", "failed", "skipped"};
    return names[s];
}

/* The job's steps over every machine: failed if one failed, running if one
 * runs, pending while one waits, else succeeded (skipped when all skipped). */
static api_step_state_t step_overall(const job_t *j, size_t s)
{
    bool running = false, pending = false, skipped = true;
    for (size_t i = 0; i < j->nm; i++) {
        api_step_state_t st = j->ms[i].step[s];
        if (st == API_STEP_FAILED)
            return API_STEP_FAILED;
        running |= st == API_STEP_RUNNING;
        pending |= st == API_STEP_PENDING;
        skipped &= st == API_STEP_SKIPPED;
    }
    return running ? API_STEP_RUNNING : pending ? API_STEP_PENDING : skipped ? API_STEP_SKIPPED : API_STEP_SUCCEEDED;
}

/* Under mu. */
static void job_machines_json(const job_t *j, json_t *o)
{
    json_t *steps = json_array(), *ms = json_array();
    for (size_t s = 0; s < j->nsteps; s++)
        json_array_append_new(steps, json_pack("{s:s,s:s}", "name", j->steps[s], "state",
                                               step_state_name(step_overall(j, s))));
    for (size_t i = 0; i < j->nm; i++) {
        const job_machine_t *m = &j->ms[i];
        json_t *ss = json_array();
        for (size_t s = 0; s < j->nsteps; s++) {
            json_t *so = json_pack("{s:s,s:s}", "name", j->steps[s], "state", step_state_name(m->step[s]));
            if (m->detail[s][0])
                json_object_set_new(so, "detail", json_string(m->detail[s]));
            json_array_append_new(ss, so);
        }
        bool done = true;
        for (size_t s = 0; s < j->nsteps; s++)
            done &= m->step[s] == API_STEP_SUCCEEDED || m->step[s] == API_STEP_SKIPPED;
        const char *state = m->failed ? "failed"
                            : j->state == JOB_CANCELLED ? "cancelled"
                            : done                      ? "succeeded"
                                                        : "running";
        json_t *mo = json_pack("{s:s,s:s,s:o,s:o}", "machine", m->name, "state", state, "steps", ss, "point",
                               m->has_point ? api_point_json(&m->point) : json_null());
        if (m->exports)
            json_object_set(mo, "exports", m->exports);
        json_object_set_new(mo, "error", m->failed ? json_pack("{s:s,s:s}", "code", m->err_code, "message",
                                                               m->err_msg)
                                                   : json_null());
        json_array_append_new(ms, mo);
    }
    json_object_set_new(o, "steps", steps);
    json_object_set_new(o, "machines", ms);
}

/* Under mu. */
static json_t *job_json(const job_t *j)
{
    char created[40], finished[40], id[24];
    api_time(j->created_ns, created, sizeof created);
    snprintf(id, sizeof id, "%" PRIu64, j->id);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "action", json_string(j->action));
    json_object_set_new(o, "machine", json_string(j->req.machine));
    json_object_set_new(o, "selector", j->req.selector[0] ? json_string(j->req.selector) : json_null());
    if (j->req.out[0])
        json_object_set_new(o, "out", json_string(j->req.out));
    if (j->exports)
        json_object_set(o, "exports", j->exports);
    json_object_set_new(o, "state", json_string(job_state_name(j->state)));
    json_object_set_new(o, "created", json_string(created));
    if (j->finished_ns) {
        api_time(j->finished_ns, finished, sizeof finished);
        json_object_set_new(o, "finished", json_string(finished));
    } else {
        json_object_set_new(o, "finished", json_null());
    }
    json_object_set_new(o, "point", j->has_point ? api_point_json(&j->point) : json_null());
    json_object_set_new(o, "progress", json_pack("{s:I,s:I}", "done_bytes", (json_int_t)j->done, "total_bytes",
                                                 (json_int_t)j->total));
    json_object_set(o, "files", j->files);
    if (j->nm)
        job_machines_json(j, o);
    if (j->state == JOB_FAILED)
        json_object_set_new(o, "error", json_pack("{s:s,s:s}", "code", j->err_code, "message", j->err_msg));
    else
        json_object_set_new(o, "error", json_null());
    return o;
}

json_t *api_jobs_get(api_jobs_t *js, uint64_t id)
{
    json_t *o = NULL;
    pthread_mutex_lock(&js->mu);
    for (job_t *j = js->head; j; j = j->next) {
        if (j->id == id) {
            o = job_json(j);
            break;
        }
    }
    pthread_mutex_unlock(&js->mu);
    return o;
}

json_t *api_jobs_list(api_jobs_t *js)
{
    json_t *a = json_array();
    pthread_mutex_lock(&js->mu);
    for (job_t *j = js->head; j && a; j = j->next)
        json_array_append_new(a, job_json(j));
    pthread_mutex_unlock(&js->mu);
    return a;
}

void api_jobs_counts(api_jobs_t *js, uint64_t *running, uint64_t *succeeded, uint64_t *failed)
{
    pthread_mutex_lock(&js->mu);
    uint64_t r = 0;
    for (job_t *j = js->head; j; j = j->next)
        r += j->state == JOB_RUNNING;
    *running = r;
    *succeeded = js->n_ok;
    *failed = js->n_failed;
    pthread_mutex_unlock(&js->mu);
}

/* ---- jobs over machines, in steps ------------------------------------------------ */

/* The thread of a job over machines: the body, then the job's end. */
static void *job_run(void *arg)
{
    job_t *j = arg;
    api_jobs_t *js = j->js;
    j->fn(j, j->fn_arg);
    pthread_mutex_lock(&js->mu);
    size_t failed = 0;
    const job_machine_t *first = NULL;
    for (size_t i = 0; i < j->nm; i++) {
        if (j->ms[i].failed && !failed++)
            first = &j->ms[i];
    }
    j->finished_ns = tm_now_ns();
    if (j->cancelled_ok) {
        j->state = JOB_CANCELLED;
    } else if (failed) {
        j->state = JOB_FAILED;
        js->n_failed++;
        if (j->nm == 1) {
            snprintf(j->err_code, sizeof j->err_code, "%s", first->err_code);
            snprintf(j->err_msg, sizeof j->err_msg, "%s", first->err_msg);
        } else {
            snprintf(j->err_code, sizeof j->err_code, "machines-failed");
            snprintf(j->err_msg, sizeof j->err_msg, "%zu of %zu machines failed; the first, %s: %.300s", failed, j->nm,
                     first->name, first->err_msg);
        }
    } else {
        j->state = JOB_SUCCEEDED;
        js->n_ok++;
    }
    const char *state = job_state_name(j->state);
    pthread_mutex_unlock(&js->mu);
    tm_log(j->state == JOB_FAILED ? TM_LOG_WARN : TM_LOG_INFO, "job %" PRIu64 " (%s of %zu machine%s) %s", j->id,
           j->action, j->nm, j->nm == 1 ? "" : "s", state);
    if (j->free_arg)
        j->free_arg(j->fn_arg);
    j->fn_arg = NULL;
    return NULL;
}

int api_jobs_run(api_jobs_t *js, const char *action, const char *selector, const char *const *machines, size_t n,
                 const char *const *steps, size_t nsteps, bool cancellable, api_job_fn fn, void *arg,
                 void (*free_arg)(void *), uint64_t *id)
{
    job_t *j = tm_calloc(1, sizeof *j);
    if (j) {
        j->files = json_array();
        j->ms = tm_calloc(n ? n : 1, sizeof *j->ms);
    }
    if (!j || !j->files || !j->ms || nsteps > API_JOB_MAX_STEPS || n == 0) {
        if (j)
            job_free(j);
        if (free_arg)
            free_arg(arg);
        return -ENOMEM;
    }
    j->js = js;
    snprintf(j->action, sizeof j->action, "%s", action);
    snprintf(j->req.machine, sizeof j->req.machine, "%s", machines[0]);
    snprintf(j->req.selector, sizeof j->req.selector, "%s", selector ? selector : "");
    j->created_ns = tm_now_ns();
    atomic_init(&j->cancel, false);
    j->fn = fn;
    j->fn_arg = arg;
    j->free_arg = free_arg;
    j->cancellable = cancellable;
    j->nsteps = nsteps;
    for (size_t s = 0; s < nsteps; s++)
        j->steps[s] = steps[s];
    j->nm = n;
    for (size_t i = 0; i < n; i++)
        snprintf(j->ms[i].name, sizeof j->ms[i].name, "%s", machines[i]);
    pthread_mutex_lock(&js->mu);
    j->id = js->next_id++;
    int rc = pthread_create(&j->thread, NULL, job_run, j);
    if (rc) {
        pthread_mutex_unlock(&js->mu);
        j->fn_arg = NULL;
        job_free(j);
        if (free_arg)
            free_arg(arg);
        return -rc;
    }
    j->next = js->head;
    js->head = j;
    js->count++;
    jobs_trim(js);
    *id = j->id;
    pthread_mutex_unlock(&js->mu);
    return 0;
}

uint64_t api_job_id(const api_job_t *j)
{
    return j->id;
}

bool api_job_cancel_asked(api_job_t *j)
{
    return atomic_load(&j->cancel);
}

void api_job_cancelled_ok(api_job_t *j)
{
    pthread_mutex_lock(&j->js->mu);
    j->cancelled_ok = true;
    pthread_mutex_unlock(&j->js->mu);
}

void api_job_step(api_job_t *j, size_t m, size_t s, api_step_state_t st, const char *fmt, ...)
{
    pthread_mutex_lock(&j->js->mu);
    j->ms[m].step[s] = st;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->ms[m].detail[s], sizeof j->ms[m].detail[s], fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&j->js->mu);
}

void api_job_fail(api_job_t *j, size_t m, const char *code, const char *fmt, ...)
{
    job_machine_t *jm = &j->ms[m];
    pthread_mutex_lock(&j->js->mu);
    jm->failed = true;
    snprintf(jm->err_code, sizeof jm->err_code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(jm->err_msg, sizeof jm->err_msg, fmt, ap);
    va_end(ap);
    for (size_t s = 0; s < j->nsteps; s++) {
        if (jm->step[s] == API_STEP_RUNNING)
            jm->step[s] = API_STEP_FAILED;
        else if (jm->step[s] == API_STEP_PENDING)
            jm->step[s] = API_STEP_SKIPPED;
    }
    pthread_mutex_unlock(&j->js->mu);
    tm_log(TM_LOG_WARN, "job %" PRIu64 " (%s): machine %s: %s", j->id, j->action, jm->name, jm->err_msg);
}

bool api_job_failed(api_job_t *j, size_t m)
{
    pthread_mutex_lock(&j->js->mu);
    bool f = j->ms[m].failed;
    pthread_mutex_unlock(&j->js->mu);
    return f;
}

void api_job_point(api_job_t *j, size_t m, const pts_point_t *pt)
{
    pthread_mutex_lock(&j->js->mu);
    j->ms[m].point = *pt;
    j->ms[m].has_point = true;
    if (j->nm == 1) {
        j->point = *pt;
        j->has_point = true;
    }
    pthread_mutex_unlock(&j->js->mu);
}

void api_job_exports(api_job_t *j, size_t m, json_t *exports)
{
    pthread_mutex_lock(&j->js->mu);
    json_decref(j->ms[m].exports);
    j->ms[m].exports = exports;
    if (j->nm == 1) {
        json_decref(j->exports);
        j->exports = json_incref(exports);
    }
    pthread_mutex_unlock(&j->js->mu);
}

void api_job_progress(api_job_t *j, uint64_t done, uint64_t total)
{
    pthread_mutex_lock(&j->js->mu);
    j->done = done;
    j->total = total;
    pthread_mutex_unlock(&j->js->mu);
}

int api_jobs_cancel(api_jobs_t *js, uint64_t id)
{
    pthread_mutex_lock(&js->mu);
    job_t *j = js->head;
    while (j && j->id != id)
        j = j->next;
    int rc = !j ? TM_ENOTFOUND : !j->cancellable ? TM_EINVAL : j->state != JOB_RUNNING ? -EALREADY : 0;
    if (rc == 0)
        atomic_store(&j->cancel, true);
    pthread_mutex_unlock(&js->mu);
    return rc;
}
