/*
 * A small pool of threads of the target stage's own, with completions handed
 * back to a libuv loop: what the NBD exports run their opens and reads on.
 *
 * Why not libuv's pool (uv_queue_work): it is one pool for the whole process
 * (4 threads by default) that the API's deferred work and the file backends
 * share, and an export open may wait up to half a minute for processing (the
 * `latest` selector). A few such opens would stall every API request and
 * every file read behind them; reads of many clients would do the same to
 * the API. Pools of our own keep those waits apart.
 *
 * Threads: tgt_workers_start, _submit, _cancel and _stop are called on the
 * loop's thread; a job's work runs on one of the pool's threads, its done on
 * the loop's thread. A job is the caller's memory, untouched by the pool
 * after done is called.
 */
#ifndef TM_TARGET_WORKERS_H
#define TM_TARGET_WORKERS_H

#include <stdbool.h>

#include <uv.h>

typedef struct tgt_workers tgt_workers_t;
typedef struct tgt_job tgt_job_t;

typedef void (*tgt_job_fn)(tgt_job_t *job);

struct tgt_job {
    tgt_job_fn work;  /* on a pool thread; not called for a cancelled job */
    tgt_job_fn done;  /* on the loop thread, exactly once */
    bool cancelled;   /* set before done when the job was cancelled before it ran */
    tgt_job_t *next;  /* the pool's */
};

/* Start nthreads threads named name (at most 15 characters, for top and
 * gdb) over loop. 0, -ENOMEM, or the error of uv_async_init or
 * pthread_create (nothing is left running then, but a handle may still be
 * closing: run the loop before uv_loop_close). */
int tgt_workers_start(uv_loop_t *loop, unsigned nthreads, const char *name, tgt_workers_t **out);

/* Queue job (work and done set). Cannot fail. */
void tgt_workers_submit(tgt_workers_t *w, tgt_job_t *job);

/* If job has not started, take it off the queue: its done follows (from the
 * loop, never from inside this call) with job->cancelled set. Otherwise do
 * nothing: it runs to its end. */
void tgt_workers_cancel(tgt_workers_t *w, tgt_job_t *job);

/*
 * Stop and free the pool: wait for the threads to finish the job they are
 * running (join), complete every job still queued as cancelled (their done
 * is called from inside this call), then close the loop handle and call
 * cb(arg) from its close callback. Meant for when nothing is in flight any
 * more; w is invalid from this call on.
 */
void tgt_workers_stop(tgt_workers_t *w, void (*cb)(void *arg), void *arg);

#endif
