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

#include "api/v1.h"
#include "base/err.h"

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
    if (strcmp(action, "materialize") != 0) {
        tm_http_reply_error(req, 400, "bad-request",
                            "action '%s' is not one this appliance runs; it runs: materialize", action);
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

void api_v1_job_get(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    const char *s = tm_http_param(req, "id");
    char *end;
    errno = 0;
    unsigned long long id = strtoull(s, &end, 10);
    json_t *j = NULL;
    if (*s && !*end && !errno)
        j = api_jobs_get(a->jobs, id);
    if (!j) {
        tm_http_reply_error(req, 404, "unknown-job", "there is no job %s on this appliance (jobs are kept in "
                                                     "memory until it restarts)", s);
        return;
    }
    tm_http_reply_json(req, 200, json_pack("{s:o}", "job", j));
}
