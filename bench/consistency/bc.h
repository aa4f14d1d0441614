/*
 * bench_consistency internals: event loops on threads of their own that the
 * benchmark's main thread hands calls to (bc_loop.c). Only
 * bench/consistency/ includes this.
 */
#ifndef TM_BENCH_CONSISTENCY_BC_H
#define TM_BENCH_CONSISTENCY_BC_H

#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

/* A loop run by a thread; calls from other threads run on it, one at a
 * time, the caller waiting for each. */
typedef struct bc_loop {
    uv_loop_t loop;
    uv_async_t wake;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool pending, running;
    int (*fn)(void *arg);
    void *arg;
    int rc;
} bc_loop_t;

/* Initialise the loop (handles may be added on the caller's thread until
 * bc_loop_run). 0 or a libuv error. */
int bc_loop_init(bc_loop_t *l);
/* Start the thread. 0 or -errno. */
int bc_loop_run(bc_loop_t *l);
/* Run fn(arg) on the loop's thread and return what it returned. */
int bc_loop_call(bc_loop_t *l, int (*fn)(void *arg), void *arg);
/* Close the wake handle, join the thread once the loop has nothing left,
 * close the loop. Everything else on it must be closing already. */
void bc_loop_stop(bc_loop_t *l);

/* Sleep ms milliseconds (between polls with a deadline, and the 1 s
 * cadence of the throughput phase). */
void bc_sleep_ms(unsigned ms);

#endif
