/*
 * What the v1 endpoints share: deferring work to the thread pool, times and
 * points as JSON, and the error replies of the points stage's codes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/v1.h"
#include "base/err.h"
#include "base/mem.h"

typedef struct api_deferred {
    uv_work_t w;
    tm_http_req_t *req;
    api_work_fn work;
    api_done_fn done;
    void *arg;
} api_deferred_t;

static void api__work(uv_work_t *w)
{
    api_deferred_t *d = w->data;
    d->work(d->arg);
}

static void api__after(uv_work_t *w, int status)
{
    api_deferred_t *d = w->data;
    (void)status; /* uv_cancel is never called: the work always ran */
    d->done(d->req, d->arg);
    tm_free(d);
}

void api_defer(api_v1_t *a, tm_http_req_t *req, api_work_fn work, api_done_fn done, void *arg)
{
    api_deferred_t *d = tm_malloc(sizeof *d);
    if (!d) {
        tm_http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    *d = (api_deferred_t){.req = req, .work = work, .done = done, .arg = arg};
    d->w.data = d;
    int rc = uv_queue_work(a->loop, &d->w, api__work, api__after);
    if (rc) {
        tm_free(d);
        tm_http_reply_error(req, 500, "internal", "cannot queue the work: %s", uv_strerror(rc));
    }
}

void api_time(uint64_t ns, char *buf, size_t len)
{
    time_t s = (time_t)(ns / 1000000000u);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%09" PRIu64 "Z", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ns % 1000000000u);
}

json_t *api_point_json(const pts_point_t *pt)
{
    char t[40], id[24];
    api_time(pt->time_ns, t, sizeof t);
    snprintf(id, sizeof id, "%" PRIu64, pt->seq);
    json_t *o = json_object();
    json_object_set_new(o, "id", pt->kind == PTS_KIND_CUSTOM ? json_null() : json_string(id));
    json_object_set_new(o, "seq", json_integer((json_int_t)pt->seq));
    json_object_set_new(o, "time", json_string(t));
    json_object_set_new(o, "kind", json_string(pts_kind_name(pt->kind)));
    json_object_set_new(o, "tag", pt->tag[0] ? json_string(pt->tag) : json_null());
    json_object_set_new(o, "multivm", json_boolean(pt->multivm));
    return o;
}

double api_rpo_seconds(const pts_machine_t *m, uint64_t received_seq, uint64_t now)
{
    if (m->latest.seq >= received_seq || now <= m->latest.time_ns)
        return 0.0; /* every write received is in a point */
    return (double)(now - m->latest.time_ns) / 1e9;
}

void api_reply_points_error(tm_http_req_t *req, int rc, const char *machine, const char *why)
{
    switch (rc) {
    case TM_EINVAL:
        tm_http_reply_error(req, 400, "bad-selector", "%s", why && why[0] ? why : "not a point selector");
        return;
    case TM_ENOPOINT:
        tm_http_reply_error(req, 404, "no-point", "%s", why && why[0] ? why : "no such point");
        return;
    case TM_ENOTFOUND:
        /* registered, but nothing has been received from it */
        tm_http_reply_error(req, 404, "no-point", "machine %s has not sent any data yet", machine);
        return;
    case -ENOSPC:
        tm_http_reply_error(req, 503, "unavailable",
                            "processing is paused: the file system of the appliance's index is nearly full; "
                            "free space there and it goes on by itself");
        return;
    case -ETIMEDOUT:
        tm_http_reply_error(req, 503, "unavailable",
                            "processing did not catch up in time; the appliance is busy: try again");
        return;
    default:
        tm_http_reply_error(req, 500, "internal", "the points stage failed: %s (see the appliance's log)",
                            tm_strerror(rc));
    }
}

bool api_machine_known(api_v1_t *a, tm_http_req_t *req, const char *machine)
{
    pts_machine_t m;
    if (pts_machine(a->pts, machine, &m) == 0 || ingest_machine_known(a->ingest, machine))
        return true;
    tm_http_reply_error(req, 404, "unknown-machine",
                        "no machine named '%s' is registered on this appliance (tidemark machine add NAME)", machine);
    return false;
}
