/*
 * The target stage's thread pool (workers.h): one queue under a mutex, idle
 * threads waiting on a condition, finished jobs on a second list that a
 * uv_async_t drains on the loop.
 */
#include "target/workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

struct tgt_workers {
    uv_loop_t *loop;
    uv_async_t async;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tgt_job_t *head, *tail;           /* queued, oldest first */
    tgt_job_t *done_head, *done_tail; /* finished or cancelled, for the loop */
    bool stopping;
    unsigned nthreads; /* started */
    pthread_t *threads;
    char name[16];
    void (*stop_cb)(void *arg);
    void *stop_arg;
};

/* Under mu. */
static void tgt__push_done(tgt_workers_t *w, tgt_job_t *job)
{
    job->next = NULL;
    if (w->done_tail)
        w->done_tail->next = job;
    else
        w->done_head = job;
    w->done_tail = job;
}

static void *tgt__thread(void *arg)
{
    tgt_workers_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stopping)
            break;
        tgt_job_t *job = w->head;
        w->head = job->next;
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        job->work(job);
        pthread_mutex_lock(&w->mu);
        tgt__push_done(w, job);
        /* Coalesced by libuv: one wakeup drains every finished job. */
        uv_async_send(&w->async);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Call done for every finished job, in the order they finished. */
static void tgt__drain(tgt_workers_t *w)
{
    pthread_mutex_lock(&w->mu);
    tgt_job_t *job = w->done_head;
    w->done_head = w->done_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    while (job) {
        tgt_job_t *next = job->next;
        job->done(job); /* may free job */
        job = next;
    }
}

static void tgt__async_cb(uv_async_t *a)
{
    tgt__drain(a->data);
}

static void tgt__free(tgt_workers_t *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    tm_free(w->threads);
    tm_free(w);
}

static void tgt__closed(uv_handle_t *h)
{
    tgt_workers_t *w = h->data;
    void (*cb)(void *) = w->stop_cb;
    void *arg = w->stop_arg;
    tgt__free(w);
    if (cb)
        cb(arg);
}

/* Tell the threads to end and join them; under nothing. */
static void tgt__join(tgt_workers_t *w)
{
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (unsigned i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    w->nthreads = 0;
}

int tgt_workers_start(uv_loop_t *loop, unsigned nthreads, const char *name, tgt_workers_t **out)
{
    *out = NULL;
    tgt_workers_t *w = tm_calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->threads = tm_calloc(nthreads ? nthreads : 1, sizeof *w->threads);
    if (!w->threads) {
        tm_free(w);
        return -ENOMEM;
    }
    w->loop = loop;
    snprintf(w->name, sizeof w->name, "%s", name);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    int rc = uv_async_init(loop, &w->async, tgt__async_cb);
    if (rc < 0) {
        tgt__free(w);
        return rc;
    }
    w->async.data = w;
    for (unsigned i = 0; i < nthreads; i++) {
        rc = -pthread_create(&w->threads[i], NULL, tgt__thread, w);
        if (rc < 0) {
            tm_error("target: cannot start thread %u of %s: %s", i, w->name, strerror(-rc));
            tgt__join(w);
            uv_close((uv_handle_t *)&w->async, tgt__closed);
            return rc;
        }
        w->nthreads++;
        pthread_setname_np(w->threads[i], w->name);
    }
    *out = w;
    return 0;
}

void tgt_workers_submit(tgt_workers_t *w, tgt_job_t *job)
{
    job->cancelled = false;
    job->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->tail)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void tgt_workers_cancel(tgt_workers_t *w, tgt_job_t *job)
{
    pthread_mutex_lock(&w->mu);
    tgt_job_t *prev = NULL;
    for (tgt_job_t *j = w->head; j; prev = j, j = j->next) {
        if (j != job)
            continue;
        if (prev)
            prev->next = j->next;
        else
            w->head = j->next;
        if (w->tail == j)
            w->tail = prev;
        j->cancelled = true;
        tgt__push_done(w, j);
        uv_async_send(&w->async);
        break;
    }
    pthread_mutex_unlock(&w->mu);
}

void tgt_workers_stop(tgt_workers_t *w, void (*cb)(void *arg), void *arg)
{
    w->stop_cb = cb;
    w->stop_arg = arg;
    tgt__join(w);
    /* Nothing runs now: what is still queued never will. */
    pthread_mutex_lock(&w->mu);
    while (w->head) {
        tgt_job_t *j = w->head;
        w->head = j->next;
        j->cancelled = true;
        tgt__push_done(w, j);
    }
    w->tail = NULL;
    pthread_mutex_unlock(&w->mu);
    tgt__drain(w);
    uv_close((uv_handle_t *)&w->async, tgt__closed);
}
