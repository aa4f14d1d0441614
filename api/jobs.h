/*
 * Jobs behind POST /v1/jobs: long work that the API starts and then
 * reports on (state, progress, result). Each job runs on a thread of its
 * own, so a long job never takes one of libuv's pool threads from the
 * requests; its state is read under a lock by GET /v1/jobs.
 *
 * Actions today: materialize (write each disk of a machine at a point as a
 * sparse raw image). The failover actions come with the failover stage.
 * Jobs live in memory: a restart forgets them (a materialize that was cut
 * short leaves only DISK.raw.part files, never a partial DISK.raw).
 */
#ifndef TM_API_JOBS_H
#define TM_API_JOBS_H

#include <jansson.h>
#include <stdint.h>

#include "journal/journal.h"
#include "points/points.h"

typedef struct api_jobs api_jobs_t;

/* Jobs kept: the oldest finished ones are forgotten past this. */
#define API_JOBS_KEEP 1000u

int api_jobs_new(jnl_t *jnl, pts_t *pts, api_jobs_t **out);
/* Cancel running jobs, wait for their threads, free. Safe on NULL. */
void api_jobs_free(api_jobs_t *js);

typedef struct api_materialize {
    char machine[WIRE_MAX_NAME + 1];
    char selector[128];
    char out[4096]; /* an absolute path to an existing folder */
} api_materialize_t;

/* Start a materialize job. *id gets its id. 0, -ENOMEM, or a pthread error. */
int api_jobs_materialize(api_jobs_t *js, const api_materialize_t *m, uint64_t *id);

/* A job whose work runs elsewhere (on the loop, through callbacks): record
 * it as running, then end it with api_jobs_end. 0 or -ENOMEM. */
int api_jobs_begin(api_jobs_t *js, const char *action, const char *machine, const char *selector, uint64_t *id);
/* End job id: succeeded when code is NULL, else failed with code and msg.
 * pt (may be NULL): the point it ran at; exports (stolen, may be NULL):
 * what it made available. */
void api_jobs_end(api_jobs_t *js, uint64_t id, const pts_point_t *pt, json_t *exports, const char *code,
                  const char *msg);

/* A job as docs/api.md shows it, under the lock (a new reference); NULL when
 * there is no such job. */
json_t *api_jobs_get(api_jobs_t *js, uint64_t id);
/* Every job, newest first. */
json_t *api_jobs_list(api_jobs_t *js);

/* Counts for /metrics. */
void api_jobs_counts(api_jobs_t *js, uint64_t *running, uint64_t *succeeded, uint64_t *failed);

#endif
