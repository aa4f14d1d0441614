/* Calls from job threads into the loop (loop_call.h). */
#include "api/loop_call.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include "base/mem.h"

struct api_call {
    struct api_call *next; /* queued, not yet run */
    api_loopq_t *q;
    api_call_fn fn;
    void *arg;
    int status;
    bool done;
    int refs; /* the caller's and the loop's; under q->mu */
    char msg[API_CALL_MSG]; /* api_call_done_msg's, under q->mu: the call's, never the caller's memory */
};

struct api_loopq {
    uv_async_t async;
    pthread_mutex_t mu;
    api_call_t *head, *tail; /* to run */
    bool closing;
    pthread_cond_t cv; /* a call ended, or the queue closes */
    int refs;    /* 1 for the handle, and each call's caller and loop side; under mu */
};

static void loopq_unref(api_loopq_t *q); /* called with mu held; unlocks */

static void call_unref(api_call_t *c) /* under q->mu */
{
    if (--c->refs == 0)
        tm_free(c);
}

static void on_async(uv_async_t *h)
{
    api_loopq_t *q = h->data;
    pthread_mutex_lock(&q->mu);
    api_call_t *c = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->mu);
    while (c) {
        api_call_t *next = c->next;
        c->fn(c, c->arg); /* ends with api_call_done, maybe later */
        c = next;
    }
}

int api_loopq_new(uv_loop_t *loop, api_loopq_t **out)
{
    api_loopq_t *q = tm_calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    int rc = uv_async_init(loop, &q->async, on_async);
    if (rc) {
        tm_free(q);
        return rc;
    }
    q->async.data = q;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->refs = 1;
    *out = q;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    api_loopq_t *q = h->data;
    pthread_mutex_lock(&q->mu);
    loopq_unref(q);
}

static void loopq_unref(api_loopq_t *q)
{
    bool last = --q->refs == 0;
    pthread_mutex_unlock(&q->mu);
    if (last) {
        pthread_cond_destroy(&q->cv);
        pthread_mutex_destroy(&q->mu);
        tm_free(q);
    }
}

void api_loopq_close(api_loopq_t *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->closing = true;
    /* queued calls never run: their callers return at once */
    api_call_t *c = q->head;
    q->head = q->tail = NULL;
    while (c) {
        api_call_t *next = c->next;
        c->status = -ESHUTDOWN;
        c->done = true;
        call_unref(c); /* the loop side's references: it will not run */
        q->refs--;
        c = next;
    }
    /* callers of calls running on the loop stop waiting too */
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    uv_close((uv_handle_t *)&q->async, on_closed);
}

int api_loop_call(api_loopq_t *q, api_call_fn fn, void *arg)
{
    return api_loop_call_msg(q, fn, arg, NULL, 0);
}

int api_loop_call_msg(api_loopq_t *q, api_call_fn fn, void *arg, char *msg, size_t len)
{
    if (msg && len)
        msg[0] = '\0';
    api_call_t *c = tm_calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    *c = (api_call_t){.q = q, .fn = fn, .arg = arg, .refs = 2};
    pthread_mutex_lock(&q->mu);
    if (q->closing) {
        pthread_mutex_unlock(&q->mu);
        tm_free(c);
        return -ESHUTDOWN;
    }
    q->refs += 2; /* the queue outlives both sides of the call */
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    uv_async_send(&q->async);
    while (!c->done && !q->closing)
        pthread_cond_wait(&q->cv, &q->mu);
    int status = c->done ? c->status : -ESHUTDOWN;
    if (c->done && msg && len)
        snprintf(msg, len, "%s", c->msg);
    call_unref(c);
    loopq_unref(q); /* unlocks */
    return status;
}

void api_call_done_msg(api_call_t *c, int status, const char *msg)
{
    api_loopq_t *q = c->q;
    pthread_mutex_lock(&q->mu);
    if (!c->done) {
        c->status = status;
        c->done = true;
        if (msg)
            snprintf(c->msg, sizeof c->msg, "%s", msg);
        pthread_cond_broadcast(&q->cv);
    }
    call_unref(c);
    loopq_unref(q);
}

void api_call_done(api_call_t *c, int status)
{
    api_call_done_msg(c, status, NULL);
}
