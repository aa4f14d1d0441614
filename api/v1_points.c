/*
 * GET /v1/machines/{m}/points, GET /v1/machines/{m}/points/{selector} and
 * POST /v1/machines/{m}/tags. Lists and selectors read the index (and
 * `latest` waits for the processor), so they run on the thread pool.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/v1.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "wire/msg.h"

#define API_POINTS_DEFAULT_LIMIT 1000u
#define API_POINTS_MAX_LIMIT 100000u

typedef struct api_points_job {
    api_v1_t *a;
    char machine[WIRE_MAX_NAME + 1];
    char selector[256];
    pts_query_t q;
    int rc;
    char why[256];
    pts_point_t pt;
    pts_point_t *list;
    size_t n;
} api_points_job_t;

static api_points_job_t *api__job(api_v1_t *a, tm_http_req_t *req, const char *machine)
{
    api_points_job_t *j = tm_calloc(1, sizeof *j);
    if (!j) {
        tm_http_reply_error(req, 500, "internal", "out of memory");
        return NULL;
    }
    j->a = a;
    snprintf(j->machine, sizeof j->machine, "%s", machine);
    return j;
}

/* A query time bound; replies 400 and returns false when malformed. */
static bool api__time_param(tm_http_req_t *req, const char *name, uint64_t *out)
{
    const char *s = tm_http_query(req, name);
    *out = 0;
    if (!s)
        return true;
    if (pts_parse_time(s, out) != 0) {
        tm_http_reply_error(req, 400, "bad-request", "%s=%s is not an RFC 3339 time (e.g. 2026-11-27T10:00:00Z)",
                            name, s);
        return false;
    }
    return true;
}

static void api__list_work(void *arg)
{
    api_points_job_t *j = arg;
    j->rc = pts_points(j->a->pts, j->machine, &j->q, &j->list, &j->n);
}

static void api__list_done(tm_http_req_t *req, void *arg)
{
    api_points_job_t *j = arg;
    if (j->rc == TM_ENOTFOUND) {
        /* registered, nothing received yet: an empty list */
        j->rc = 0;
        j->n = 0;
    }
    if (j->rc) {
        api_reply_points_error(req, j->rc, j->machine, NULL);
    } else {
        json_t *a = json_array();
        for (size_t i = 0; i < j->n; i++)
            json_array_append_new(a, api_point_json(&j->list[i]));
        tm_http_reply_json(req, 200, json_pack("{s:s,s:o}", "machine", j->machine, "points", a));
    }
    tm_free(j->list);
    tm_free(j);
}

void api_v1_points(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    const char *machine = tm_http_param(req, "machine");
    if (!api_machine_known(a, req, machine))
        return;
    pts_query_t q = {.limit = API_POINTS_DEFAULT_LIMIT};
    const char *kind = tm_http_query(req, "kind");
    if (kind) {
        if (strcmp(kind, "crash") == 0)
            q.kinds = 1u << PTS_KIND_CRASH;
        else if (strcmp(kind, "app") == 0)
            q.kinds = 1u << PTS_KIND_APP;
        else {
            tm_http_reply_error(req, 400, "bad-request", "kind=%s: the kinds are crash and app", kind);
            return;
        }
    }
    if (!api__time_param(req, "since", &q.since_ns) || !api__time_param(req, "until", &q.until_ns))
        return;
    const char *limit = tm_http_query(req, "limit");
    if (limit) {
        char *end;
        errno = 0;
        unsigned long long l = strtoull(limit, &end, 10);
        if (!*limit || *end || errno || l < 1 || l > API_POINTS_MAX_LIMIT) {
            tm_http_reply_error(req, 400, "bad-request", "limit=%s: a number from 1 to %u", limit,
                                API_POINTS_MAX_LIMIT);
            return;
        }
        q.limit = (size_t)l;
    }
    api_points_job_t *j = api__job(a, req, machine);
    if (!j)
        return;
    j->q = q;
    api_defer(a, req, api__list_work, api__list_done, j);
}

static void api__resolve_work(void *arg)
{
    api_points_job_t *j = arg;
    j->rc = pts_resolve(j->a->pts, j->machine, j->selector, &j->pt, j->why, sizeof j->why);
}

static void api__resolve_done(tm_http_req_t *req, void *arg)
{
    api_points_job_t *j = arg;
    if (j->rc)
        api_reply_points_error(req, j->rc, j->machine, j->why);
    else
        tm_http_reply_json(req, 200, json_pack("{s:s,s:s,s:o}", "machine", j->machine, "selector", j->selector,
                                               "point", api_point_json(&j->pt)));
    tm_free(j);
}

void api_v1_point(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    const char *machine = tm_http_param(req, "machine");
    const char *sel = tm_http_param(req, "selector");
    if (!api_machine_known(a, req, machine))
        return;
    if (strlen(sel) >= sizeof ((api_points_job_t *)0)->selector) {
        tm_http_reply_error(req, 400, "bad-selector", "the selector is too long to be one");
        return;
    }
    api_points_job_t *j = api__job(a, req, machine);
    if (!j)
        return;
    snprintf(j->selector, sizeof j->selector, "%s", sel);
    api_defer(a, req, api__resolve_work, api__resolve_done, j);
}

void api_v1_tags(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    const char *machine = tm_http_param(req, "machine");
    if (!api_machine_known(a, req, machine))
        return;
    char name[WIRE_MAX_NAME + 1];
    json_t *body = tm_http_json(req);
    json_t *jn = body ? json_object_get(body, "name") : NULL;
    if (body && !json_is_object(body)) {
        tm_http_reply_error(req, 400, "bad-request", "the body must be a JSON object like {\"name\": \"before-upgrade\"}");
        return;
    }
    if (jn) {
        if (!json_is_string(jn) || !wire_name_ok(json_string_value(jn))) {
            tm_http_reply_error(req, 400, "bad-request",
                                "name must be 1 to %u characters of A-Z a-z 0-9 . _ - (not starting with . or -)",
                                WIRE_MAX_NAME);
            return;
        }
        snprintf(name, sizeof name, "%s", json_string_value(jn));
    } else {
        char t[40];
        api_time(tm_now_ns(), t, sizeof t);
        /* "api-20261127T100000Z": a name of the allowed characters */
        snprintf(name, sizeof name, "api-%.4s%.2s%.2sT%.2s%.2s%.2sZ", t, t + 5, t + 8, t + 11, t + 14, t + 17);
    }
    uint64_t id = tm_now_ns();
    if (id <= a->next_tag_id)
        id = a->next_tag_id + 1;
    a->next_tag_id = id;
    int rc = ingest_request_tag(a->ingest, machine, WIRE_TAG_APP, id, name);
    if (rc == TM_ENOTFOUND || rc == TM_ECLOSED) {
        tm_http_reply_error(req, 409, "conflict",
                            "machine %s has no agent connected now: an app-consistent tag needs its agent", machine);
        return;
    }
    if (rc) {
        tm_http_reply_error(req, 500, "internal", "the tag request could not be sent: %s", tm_strerror(rc));
        return;
    }
    char ids[24];
    snprintf(ids, sizeof ids, "%" PRIu64, id);
    tm_http_reply_json(req, 202, json_pack("{s:s,s:{s:s,s:s}}", "machine", machine, "tag", "name", name, "id", ids));
}
