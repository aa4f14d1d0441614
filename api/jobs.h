/*
 * Jobs behind POST /v1/jobs: long work that the API starts and then
 * reports on (state, progress, result). Each job runs on a thread of its
 * own, so a long job never takes one of libuv's pool threads from the
 * requests; its state is read under a lock by GET /v1/jobs.
 *
 * Actions: materialize (write each disk of a machine at a point as a
 * sparse raw image); test-failover and test-cleanup (begin/end, their work
 * runs on the loop); failover, planned-failover, change-point and commit
 * (api_jobs_run: a thread over several machines in named steps, failover.h).
 * Jobs live in memory: a restart forgets them (a materialize that was cut
 * short leaves only DISK.raw.part files, never a partial DISK.raw; what a
 * failover did is in the index, and `tidemark serve` serves it again).
 */
#ifndef TM_API_JOBS_H
#define TM_API_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
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

/* ---- jobs over machines, in steps (api_jobs_run) --------------------------- */

typedef struct job api_job_t;

#define API_JOB_MAX_STEPS 6u

typedef enum api_step_state {
    API_STEP_PENDING = 0,
    API_STEP_RUNNING,
    API_STEP_SUCCEEDED,
    API_STEP_FAILED,
    API_STEP_SKIPPED,
} api_step_state_t;

/* The job's body, on its own thread. It reports through api_job_*; when it
 * returns, the job is failed when a machine failed, cancelled when it said
 * so (api_job_cancelled_ok), else succeeded. */
typedef void (*api_job_fn)(api_job_t *j, void *arg);

/*
 * Start a job running fn(j, arg) over machines (copied), each going through
 * steps (names, static strings). arg is freed with free_arg (may be NULL)
 * once the job ends. cancellable: api_jobs_cancel may ask it to stop.
 * 0, -ENOMEM, or a pthread error (arg is then freed too).
 */
int api_jobs_run(api_jobs_t *js, const char *action, const char *selector, const char *const *machines, size_t n,
                 const char *const *steps, size_t nsteps, bool cancellable, api_job_fn fn, void *arg,
                 void (*free_arg)(void *), uint64_t *id);

uint64_t api_job_id(const api_job_t *j);
/* A cancel was asked (the body checks between steps and while it waits). */
bool api_job_cancel_asked(api_job_t *j);
/* The body undid its work after a cancel: the job ends "cancelled". */
void api_job_cancelled_ok(api_job_t *j);
/* Machine m's step s is now st; detail (printf, may be NULL) says what it did or found. */
void api_job_step(api_job_t *j, size_t m, size_t s, api_step_state_t st, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Machine m failed: code (docs/api.md) and a sentence; its running step fails too. */
void api_job_fail(api_job_t *j, size_t m, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
bool api_job_failed(api_job_t *j, size_t m);
void api_job_point(api_job_t *j, size_t m, const pts_point_t *pt);
/* exports: stolen. */
void api_job_exports(api_job_t *j, size_t m, json_t *exports);
void api_job_progress(api_job_t *j, uint64_t done, uint64_t total);

/* Ask job id to stop: 0, TM_ENOTFOUND, TM_EINVAL (its action cannot be
 * cancelled), -EALREADY (it has ended). */
int api_jobs_cancel(api_jobs_t *js, uint64_t id);

/* A job as docs/api.md shows it, under the lock (a new reference); NULL when
 * there is no such job. */
json_t *api_jobs_get(api_jobs_t *js, uint64_t id);
/* Every job, newest first. */
json_t *api_jobs_list(api_jobs_t *js);

/* Counts for /metrics. */
void api_jobs_counts(api_jobs_t *js, uint64_t *running, uint64_t *succeeded, uint64_t *failed);

#endif
