/*
 * POST /v1/jobs, GET /v1/jobs, GET /v1/jobs/{id}. The request is checked
 * here, on the loop, so that a job that starts has what it needs; what can
 * only be known by working (the point, the data) is the job's to report.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/failover.h"
#include "api/v1.h"
#include "base/err.h"
#include "base/mem.h"

/* A string member; replies 400 and returns NULL when missing or not a string. */
static const char *api__str(tm_http_req_t *req, json_t *body, const char *key)
{
    json_t *v = json_object_get(body, key);
    if (!v || !json_is_string(v)) {
        tm_http_reply_error(req, 400, "bad-request", "the job needs \"%s\" (a string)", key);
        return NULL;
    }
    return json_string_value(v);
}

/* A test failover's start, finishing on the loop. */
typedef struct api_test_start {
    api_v1_t *a;
    uint64_t job;
    char machine[WIRE_MAX_NAME + 1];
} api_test_start_t;

static void api__test_started(void *arg, int status, uint64_t seq, const char *msg)
{
    api_test_start_t *t = arg;
    api_v1_t *a = t->a;
    if (status) {
        api_jobs_end(a->jobs, t->job, NULL, NULL, status == TM_EINVAL ? "bad-selector"
                                                  : status == TM_ENOPOINT || status == TM_ENOTFOUND ? "no-point"
                                                                                                      : "internal",
                     msg);
        tm_free(t);
        return;
    }
    pts_point_t pt = {.seq = seq, .kind = PTS_KIND_CUSTOM};
    char id[24], why[64];
    snprintf(id, sizeof id, "%" PRIu64, seq);
    if (pts_resolve(a->pts, t->machine, id, &pt, why, sizeof why) != 0)
        pt = (pts_point_t){.seq = seq, .kind = PTS_KIND_CUSTOM};
    json_t *ex = json_array();
    pts_machine_t m;
    if (ex && pts_machine(a->pts, t->machine, &m) == 0) {
        for (unsigned d = 0; d < m.ndisks; d++) {
            char name[2 * WIRE_MAX_NAME + 8], uri[2 * WIRE_MAX_NAME + 100];
            snprintf(name, sizeof name, "%s/%s@test", t->machine, m.disks[d].name);
            snprintf(uri, sizeof uri, "nbd://%s/%s", a->nbd ? a->nbd : "?", name);
            json_array_append_new(ex, json_pack("{s:s,s:s,s:s}", "disk", m.disks[d].name, "name", name, "uri", uri));
        }
    }
    api_jobs_end(a->jobs, t->job, &pt, ex, NULL, NULL);
    tm_free(t);
}

/* test-failover {"machine", "point"} and test-cleanup {"machine"}. */
static void api__test_job(api_v1_t *a, tm_http_req_t *req, json_t *body, const char *action)
{
    if (!a->exports) {
        tm_http_reply_error(req, 409, "conflict", "this appliance serves no NBD exports: no test failover");
        return;
    }
    const char *machine = api__str(req, body, "machine");
    if (!machine || !api_machine_known(a, req, machine))
        return;
    bool start = strcmp(action, "test-failover") == 0;
    const char *point = start ? api__str(req, body, "point") : NULL;
    if (start && !point)
        return;
    char err[512];
    uint64_t id;
    int rc;
    if (!start) {
        rc = tgt_test_cleanup(a->exports, machine, err, sizeof err);
        if (rc == TM_ENOTFOUND || rc == -EBUSY) {
            tm_http_reply_error(req, 409, "conflict", "%s", err);
            return;
        }
        if (api_jobs_begin(a->jobs, action, machine, NULL, &id) != 0) {
            tm_http_reply_error(req, 500, "internal", "out of memory");
            return;
        }
        api_jobs_end(a->jobs, id, NULL, NULL, rc ? "internal" : NULL, rc ? err : NULL);
    } else {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/test", a->data_dir);
        api_test_start_t *t = tm_calloc(1, sizeof *t);
        if (!t || api_jobs_begin(a->jobs, action, machine, point, &id) != 0) {
            tm_free(t);
            tm_http_reply_error(req, 500, "internal", "out of memory");
            return;
        }
        *t = (api_test_start_t){.a = a, .job = id};
        snprintf(t->machine, sizeof t->machine, "%s", machine);
        rc = tgt_test_start(a->exports, machine, point, dir, api__test_started, t, err, sizeof err);
        if (rc) {
            tm_free(t);
            api_jobs_end(a->jobs, id, NULL, NULL, rc == -EBUSY ? "conflict" : "bad-request", err);
            tm_http_reply_error(req, rc == -EBUSY ? 409 : 400, rc == -EBUSY ? "conflict" : "bad-request", "%s", err);
            return;
        }
    }
    char loc[64];
    snprintf(loc, sizeof loc, "/v1/jobs/%" PRIu64, id);
    tm_http_add_header(req, "Location", loc);
    tm_http_reply_json(req, 201, json_pack("{s:o}", "job", api_jobs_get(a->jobs, id)));
}

void api_v1_jobs_post(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    json_t *body = tm_http_json(req);
    if (!body || !json_is_object(body)) {
        tm_http_reply_error(req, 400, "bad-request",
                            "the body must be a JSON object: {\"action\": \"materialize\", \"machine\": ..., "
                            "\"point\": ..., \"out\": ...}");
        return;
    }
    const char *action = api__str(req, body, "action");
    if (!action)
        return;
    if (strcmp(action, "test-failover") == 0 || strcmp(action, "test-cleanup") == 0) {
        api__test_job(a, req, body, action);
        return;
    }
    if (api_failover_action(action)) {
        api_failover_post(a, req, body, action);
        return;
    }
    if (strcmp(action, "materialize") != 0) {
        tm_http_reply_error(req, 400, "bad-request",
                            "action '%s' is not one this appliance runs; it runs: failover, planned-failover, "
                            "change-point, commit, test-failover, test-cleanup, materialize",
                            action);
        return;
    }
    const char *machine = api__str(req, body, "machine");
    if (!machine)
        return;
    const char *point = api__str(req, body, "point");
    if (!point)
        return;
    const char *out = api__str(req, body, "out");
    if (!out)
        return;
    if (!api_machine_known(a, req, machine))
        return;
    api_materialize_t m;
    if (strlen(point) >= sizeof m.selector) {
        tm_http_reply_error(req, 400, "bad-selector", "the point selector is too long to be one");
        return;
    }
    struct stat st;
    if (out[0] != '/' || strlen(out) >= sizeof m.out) {
        tm_http_reply_error(req, 400, "bad-request", "out must be an absolute path to a folder on the appliance");
        return;
    }
    if (stat(out, &st) != 0 || !S_ISDIR(st.st_mode)) {
        tm_http_reply_error(req, 400, "bad-request", "out: %s is not a folder on the appliance", out);
        return;
    }
    if (access(out, W_OK | X_OK) != 0) {
        tm_http_reply_error(req, 400, "bad-request", "out: the appliance may not write into %s", out);
        return;
    }
    snprintf(m.machine, sizeof m.machine, "%s", machine);
    snprintf(m.selector, sizeof m.selector, "%s", point);
    snprintf(m.out, sizeof m.out, "%s", out);
    uint64_t id;
    int rc = api_jobs_materialize(a->jobs, &m, &id);
    if (rc) {
        tm_http_reply_error(req, 500, "internal", "the job could not start: %s", tm_strerror(rc));
        return;
    }
    char loc[64];
    snprintf(loc, sizeof loc, "/v1/jobs/%" PRIu64, id);
    tm_http_add_header(req, "Location", loc);
    tm_http_reply_json(req, 201, json_pack("{s:o}", "job", api_jobs_get(a->jobs, id)));
}

void api_v1_jobs_list(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    tm_http_reply_json(req, 200, json_pack("{s:o}", "jobs", api_jobs_list(a->jobs)));
}

/* The job id of the path, or false after a 404. */
static bool api__job_id(api_v1_t *a, tm_http_req_t *req, uint64_t *id)
{
    const char *s = tm_http_param(req, "id");
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    json_t *j = NULL;
    if (*s && !*end && !errno)
        j = api_jobs_get(a->jobs, v);
    if (!j) {
        tm_http_reply_error(req, 404, "unknown-job", "there is no job %s on this appliance (jobs are kept in "
                                                     "memory until it restarts)", s);
        return false;
    }
    json_decref(j);
    *id = v;
    return true;
}

void api_v1_job_cancel(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    uint64_t id;
    if (!api__job_id(a, req, &id))
        return;
    int rc = api_jobs_cancel(a->jobs, id);
    if (rc == TM_EINVAL) {
        tm_http_reply_error(req, 409, "not-cancellable", "job %" PRIu64 " cannot be cancelled: only failover and "
                                                         "planned-failover jobs can", id);
        return;
    }
    if (rc == -EALREADY) {
        tm_http_reply_error(req, 409, "job-ended", "job %" PRIu64 " has already ended", id);
        return;
    }
    if (rc) {
        tm_http_reply_error(req, 404, "unknown-job", "there is no job %" PRIu64 " on this appliance", id);
        return;
    }
    tm_http_reply_json(req, 202, json_pack("{s:o}", "job", api_jobs_get(a->jobs, id)));
}

void api_v1_job_get(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    uint64_t id;
    if (api__job_id(a, req, &id))
        tm_http_reply_json(req, 200, json_pack("{s:o}", "job", api_jobs_get(a->jobs, id)));
}
