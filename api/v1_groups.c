/*
 * GET /v1/groups, GET /v1/groups/{g}, GET /v1/groups/{g}/points and POST
 * /v1/groups/{g}/rounds
 * (docs/api.md, "Replication groups"): the groups and their rounds from
 * the coordinator (on the loop), their group points from the index (on
 * the thread pool).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/v1.h"
#include "base/err.h"
#include "base/mem.h"

#define API_GROUP_POINTS_DEFAULT_LIMIT 1000u

void api_v1_groups(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    tm_http_reply_json(req, 200, json_pack("{s:o}", "groups", a->cns ? cns_groups_json(a->cns) : json_array()));
}

void api_v1_group_get(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    const char *g = tm_http_param(req, "group");
    json_t *j = a->cns ? cns_group_json(a->cns, g) : NULL;
    if (!j) {
        tm_http_reply_error(req, 404, "unknown-group", "there is no replication group '%s' on this appliance", g);
        return;
    }
    tm_http_reply_json(req, 200, json_pack("{s:o}", "group", j));
}

/* The group of the path, or NULL after a 404. On the loop. */
static const char *api__group(api_v1_t *a, tm_http_req_t *req)
{
    const char *g = tm_http_param(req, "group");
    if (!cns_has_group(a->cns, g)) {
        tm_http_reply_error(req, 404, "unknown-group", "there is no replication group '%s' on this appliance", g);
        return NULL;
    }
    return g;
}

typedef struct api_gpoints {
    api_v1_t *a;
    char group[PTS_MAX_GROUP_NAME + 1];
    size_t limit;
    int rc;
    pts_group_point_t *v;
    size_t n;
} api_gpoints_t;

static void api__gpoints_work(void *arg)
{
    api_gpoints_t *j = arg;
    j->rc = pts_group_points(j->a->pts, j->group, j->limit, &j->v, &j->n);
}

static void api__gpoints_done(tm_http_req_t *req, void *arg)
{
    api_gpoints_t *j = arg;
    if (j->rc) {
        tm_http_reply_error(req, 500, "internal", "the group's points cannot be read: %s", tm_strerror(j->rc));
    } else {
        json_t *pts = json_array();
        for (size_t i = 0; i < j->n; i++) {
            const pts_group_point_t *gp = &j->v[i];
            char id[24], t[40];
            snprintf(id, sizeof id, "%" PRIu64, gp->round);
            api_time(gp->time_ns, t, sizeof t);
            json_t *ms = json_array();
            for (size_t k = 0; k < gp->nmembers; k++) {
                char seq[24];
                snprintf(seq, sizeof seq, "%" PRIu64, gp->members[k].seq);
                json_array_append_new(ms, json_pack("{s:s,s:s}", "machine", gp->members[k].machine, "point", seq));
            }
            json_array_append_new(pts, json_pack("{s:s,s:s,s:s,s:b,s:o}", "round", id, "kind",
                                                 pts_kind_name(gp->kind), "time", t, "whole", gp->whole, "members",
                                                 ms));
        }
        tm_http_reply_json(req, 200, json_pack("{s:s,s:o}", "group", j->group, "points", pts));
    }
    pts_group_points_free(j->v, j->n);
    tm_free(j);
}

void api_v1_group_points(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    const char *g = api__group(a, req);
    if (!g)
        return;
    size_t limit = API_GROUP_POINTS_DEFAULT_LIMIT;
    const char *l = tm_http_query(req, "limit");
    if (l) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(l, &end, 10);
        if (*end || errno || v == 0 || v > 100000) {
            tm_http_reply_error(req, 400, "bad-request", "limit=%s is not a number from 1 to 100000", l);
            return;
        }
        limit = v;
    }
    api_gpoints_t *j = tm_calloc(1, sizeof *j);
    if (!j) {
        tm_http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    j->a = a;
    j->limit = limit;
    snprintf(j->group, sizeof j->group, "%s", g);
    api_defer(a, req, api__gpoints_work, api__gpoints_done, j);
}

void api_v1_group_round(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    const char *g = api__group(a, req);
    if (!g)
        return;
    json_t *body = tm_http_json(req);
    const char *kind = "crash";
    if (body) {
        json_t *k = json_object_get(body, "kind");
        if (!json_is_object(body) || (k && (!json_is_string(k) || (strcmp(json_string_value(k), "crash") != 0 &&
                                                                    strcmp(json_string_value(k), "app") != 0)))) {
            tm_http_reply_error(req, 400, "bad-request", "the body is {\"kind\": \"crash\" | \"app\"} (or none)");
            return;
        }
        if (k)
            kind = json_string_value(k);
    }
    uint64_t round;
    int rc = cns_round_now(a->cns, g, strcmp(kind, "app") == 0, &round);
    if (rc == -EBUSY) {
        tm_http_reply_error(req, 409, "conflict", "a round of group %s is under way; ask again when it ends", g);
        return;
    }
    if (rc) {
        tm_http_reply_error(req, 500, "internal", "the round cannot start: %s", tm_strerror(rc));
        return;
    }
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, round);
    tm_http_reply_json(req, 202, json_pack("{s:s,s:{s:s,s:s}}", "group", g, "round", "id", id, "kind", kind));
}
