/*
 * The orchestrator API's endpoints (docs/api.md), on top of the HTTP server
 * of http.h: machines, points and selectors, tag requests, jobs, metrics.
 * Each v1_*.c file serves one group of paths; this header is what they and
 * `tidemark serve` share.
 *
 * Threads: handlers run on the loop thread. Anything that may wait (a
 * selector that processes first, a point list walking the index) runs on
 * libuv's thread pool through api_defer() and replies back on the loop.
 */
#ifndef TM_API_V1_H
#define TM_API_V1_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "api/http.h"
#include "api/jobs.h"
#include "api/loop_call.h"
#include "consistency/consistency.h"
#include "ingest/ingest.h"
#include "journal/journal.h"
#include "points/points.h"
#include "target/export.h"

typedef struct api_v1 {
    uv_loop_t *loop;
    jnl_t *jnl;
    pts_t *pts;
    ingest_t *ingest;
    api_jobs_t *jobs;
    tm_http_server_t *http; /* for its stats in /metrics; set after it is made */
    const char *data_dir;
    const char *version;
    const char *nbd;        /* where disks at points are served ("HOST:PORT"), NULL: not served */
    tgt_exports_t *exports; /* the NBD exports (test failovers), NULL: none */
    api_loopq_t *loopq;     /* failover jobs' calls into the loop (loop_call.h) */
    cns_t *cns;             /* replication groups' coordinator, NULL: no groups */
    bool groups_saving;     /* a change of groups is being written (v1_groups_edit.c) */
    uint64_t next_tag_id;
} api_v1_t;

/* The routing table for a (which must outlive the server) into out; the
 * count. The server copies the table. */
#define API_V1_NROUTES 17u
size_t api_v1_routes(api_v1_t *a, tm_http_route_t out[API_V1_NROUTES]);

/* ---- shared by the v1_*.c files ------------------------------------------ */

/* Run work(arg) on the thread pool, then done(req, arg) on the loop thread,
 * which replies. If queueing fails, the request gets a 500. */
typedef void (*api_work_fn)(void *arg);
typedef void (*api_done_fn)(tm_http_req_t *req, void *arg);
void api_defer(api_v1_t *a, tm_http_req_t *req, api_work_fn work, api_done_fn done, void *arg);

/* RFC 3339 UTC with nanoseconds. buf >= 40 bytes. */
void api_time(uint64_t ns, char *buf, size_t len);
/* A point as docs/api.md shows it (a new reference). */
json_t *api_point_json(const pts_point_t *pt);
/* What a machine would lose if it failed now: 0 when its newest point
 * holds everything received, else the age of that point (an upper bound:
 * the first write after it came later). */
double api_rpo_seconds(const pts_machine_t *m, uint64_t received_seq, uint64_t now);
/* Reply for a pts_resolve/pts_points error code, with why when given. */
void api_reply_points_error(tm_http_req_t *req, int rc, const char *machine, const char *why);
/* True when the machine is registered or has sent data; else replies 404
 * unknown-machine and returns false. */
bool api_machine_known(api_v1_t *a, tm_http_req_t *req, const char *machine);

/* Route handlers, by file. */
void api_v1_health(tm_http_req_t *req, void *ctx);
void api_v1_machines(tm_http_req_t *req, void *ctx);
void api_v1_points(tm_http_req_t *req, void *ctx);
void api_v1_point(tm_http_req_t *req, void *ctx);
void api_v1_tags(tm_http_req_t *req, void *ctx);
void api_v1_jobs_post(tm_http_req_t *req, void *ctx);
void api_v1_jobs_list(tm_http_req_t *req, void *ctx);
void api_v1_job_get(tm_http_req_t *req, void *ctx);
void api_v1_job_cancel(tm_http_req_t *req, void *ctx);
void api_v1_metrics(tm_http_req_t *req, void *ctx);
void api_v1_groups(tm_http_req_t *req, void *ctx);
void api_v1_group_get(tm_http_req_t *req, void *ctx);
void api_v1_group_create(tm_http_req_t *req, void *ctx);
void api_v1_group_change(tm_http_req_t *req, void *ctx);
void api_v1_group_delete(tm_http_req_t *req, void *ctx);
void api_v1_group_points(tm_http_req_t *req, void *ctx);
void api_v1_group_round(tm_http_req_t *req, void *ctx);

#endif
