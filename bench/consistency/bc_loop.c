#include "bench/consistency/bc.h"

#include <errno.h>
#include <time.h>

static void bc__on_wake(uv_async_t *h)
{
    bc_loop_t *l = h->data;
    pthread_mutex_lock(&l->mu);
    bool pending = l->pending;
    pthread_mutex_unlock(&l->mu);
    if (!pending)
        return;
    /* Unlocked: fn's callbacks may run other loop work; the caller waits
     * for pending to drop, so fn and arg stay as they are. */
    int rc = l->fn(l->arg);
    pthread_mutex_lock(&l->mu);
    l->rc = rc;
    l->pending = false;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static void *bc__thread(void *arg)
{
    bc_loop_t *l = arg;
    uv_run(&l->loop, UV_RUN_DEFAULT);
    return NULL;
}

int bc_loop_init(bc_loop_t *l)
{
    int rc = uv_loop_init(&l->loop);
    if (rc != 0)
        return rc;
    rc = uv_async_init(&l->loop, &l->wake, bc__on_wake);
    if (rc != 0) {
        uv_loop_close(&l->loop);
        return rc;
    }
    l->wake.data = l;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    return 0;
}

int bc_loop_run(bc_loop_t *l)
{
    int rc = pthread_create(&l->thread, NULL, bc__thread, l);
    if (rc != 0)
        return -rc;
    l->running = true;
    return 0;
}

int bc_loop_call(bc_loop_t *l, int (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&l->mu);
    l->fn = fn;
    l->arg = arg;
    l->pending = true;
    uv_async_send(&l->wake);
    while (l->pending)
        pthread_cond_wait(&l->cv, &l->mu);
    int rc = l->rc;
    pthread_mutex_unlock(&l->mu);
    return rc;
}

static int bc__close_wake(void *arg)
{
    bc_loop_t *l = arg;
    uv_close((uv_handle_t *)&l->wake, NULL);
    return 0;
}

void bc_loop_stop(bc_loop_t *l)
{
    if (l->running) {
        /* The wake handle closes from the loop's thread; the call's answer
         * is given inside the callback, before the close completes. */
        bc_loop_call(l, bc__close_wake, l);
        pthread_join(l->thread, NULL);
        l->running = false;
    } else {
        uv_close((uv_handle_t *)&l->wake, NULL);
        uv_run(&l->loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&l->loop);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
}

void bc_sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
