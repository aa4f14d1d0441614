#include "tests/agent/arp.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "base/mem.h"

struct arp {
    uv_loop_t loop;
    uv_async_t call;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool pending;
    int (*fn)(arp_t *p, void *arg);
    void *arg;
    int rc;
    unsigned n;
    agent_replay_t **r;
    unsigned done;    /* agents whose done() came, under mu */
    unsigned closed;  /* agents closed (loop thread) */
};

static void arp__on_call(uv_async_t *h)
{
    arp_t *p = h->data;
    pthread_mutex_lock(&p->mu);
    bool pending = p->pending;
    pthread_mutex_unlock(&p->mu);
    if (!pending)
        return;
    /* Unlocked: fn may end in an agent's done(), which takes the lock. The
     * caller waits for pending to drop, so fn and arg stay as they are. */
    int rc = p->fn(p, p->arg);
    pthread_mutex_lock(&p->mu);
    p->rc = rc;
    p->pending = false;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void *arp__run(void *arg)
{
    arp_t *p = arg;
    uv_run(&p->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void arp__done(void *arg)
{
    arp_t *p = arg;
    pthread_mutex_lock(&p->mu);
    p->done++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

arp_t *arp_start(const arp_opts_t *o)
{
    arp_t *p = tm_calloc(1, sizeof *p);
    cr_assert_not_null(p);
    p->n = o->n;
    p->r = tm_calloc(o->n, sizeof *p->r);
    cr_assert_not_null(p->r);
    cr_assert_eq(uv_loop_init(&p->loop), 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    uv_async_init(&p->loop, &p->call, arp__on_call);
    p->call.data = p;
    for (unsigned i = 0; i < o->n; i++) {
        char spec[512], err[256];
        snprintf(spec, sizeof spec, "%s,seed=%llu", o->workload, (unsigned long long)(o->seed + i));
        agent_replay_opts_t ro = {.server = o->server, .machine = o->machines[i], .secret = o->secrets[i],
                                  .pre_script = o->pre_script, .post_script = o->post_script,
                                  .backoff_max_ms = 500, .done = arp__done, .done_arg = p};
        cr_assert_eq(agent_workload_parse(spec, &ro.workload, err, sizeof err), 0, "%s", err);
        int rc = agent_replay_new(&p->loop, &ro, &p->r[i]);
        cr_assert_eq(rc, 0, "agent_replay_new %s: %d", o->machines[i], rc);
        agent_replay_start(p->r[i]);
    }
    cr_assert_eq(pthread_create(&p->thread, NULL, arp__run, p), 0);
    return p;
}

int arp_call(arp_t *p, int (*fn)(arp_t *p, void *arg), void *arg)
{
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->pending = true;
    uv_async_send(&p->call);
    while (p->pending)
        pthread_cond_wait(&p->cv, &p->mu);
    int rc = p->rc;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

uv_loop_t *arp_loop(arp_t *p)
{
    return &p->loop;
}

agent_client_t *arp_client(arp_t *p, unsigned i)
{
    return agent_replay_client(p->r[i]);
}

typedef struct arp_q {
    unsigned i;
    double pct;
    agent_client_stats_t *st;
    uint64_t v;
} arp_q_t;

static int arp__stats(arp_t *p, void *arg)
{
    arp_q_t *q = arg;
    agent_client_get_stats(arp_client(p, q->i), q->st);
    return 0;
}

void arp_stats(arp_t *p, unsigned i, agent_client_stats_t *st)
{
    arp_q_t q = {.i = i, .st = st};
    arp_call(p, arp__stats, &q);
}

static int arp__pct(arp_t *p, void *arg)
{
    arp_q_t *q = arg;
    q->v = agent_client_hold_percentile(arp_client(p, q->i), q->pct);
    return 0;
}

uint64_t arp_hold_percentile(arp_t *p, unsigned i, double pct)
{
    arp_q_t q = {.i = i, .pct = pct};
    arp_call(p, arp__pct, &q);
    return q.v;
}

typedef struct arp_rq {
    unsigned i;
    agent_round_rec_t *out;
    size_t max, n;
} arp_rq_t;

static int arp__rounds(arp_t *p, void *arg)
{
    arp_rq_t *q = arg;
    q->n = agent_client_rounds(arp_client(p, q->i), q->out, q->max);
    return 0;
}

size_t arp_rounds(arp_t *p, unsigned i, agent_round_rec_t *out, size_t max)
{
    arp_rq_t q = {.i = i, .out = out, .max = max};
    arp_call(p, arp__rounds, &q);
    return q.n;
}

static int arp__finish(arp_t *p, void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < p->n; i++)
        agent_replay_finish(p->r[i]);
    return 0;
}

bool arp_finish(arp_t *p, int timeout_ms)
{
    arp_call(p, arp__finish, NULL);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000 + 1;
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    while (p->done < p->n && rc == 0)
        rc = pthread_cond_timedwait(&p->cv, &p->mu, &until);
    bool ok = p->done == p->n;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

static void arp__closed(void *arg)
{
    arp_t *p = arg;
    if (++p->closed == p->n)
        uv_close((uv_handle_t *)&p->call, NULL);
}

static int arp__close(arp_t *p, void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < p->n; i++)
        agent_replay_close(p->r[i], arp__closed, p);
    return 0;
}

void arp_stop(arp_t *p)
{
    arp_call(p, arp__close, NULL);
    pthread_join(p->thread, NULL);
    cr_assert_eq(uv_loop_close(&p->loop), 0, "a handle was left open");
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    tm_free(p->r);
    tm_free(p);
}
