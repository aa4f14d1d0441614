#include "tests/ingest/its.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "base/err.h"
#include "base/mem.h"
#include "ingest/registry.h"
#include "journal/journal.h"

struct its {
    uv_loop_t loop;
    uv_async_t call;
    jnl_t *jnl;
    ingest_t *ig;
    unsigned port;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* one call at a time, under mu */
    bool pending, stop;
    int (*fn)(ingest_t *ig, void *arg);
    void *arg;
    int rc;
};

static void its__stopped(void *arg)
{
    its_t *s = arg;
    uv_close((uv_handle_t *)&s->call, NULL);
}

static void its__on_call(uv_async_t *h)
{
    its_t *s = h->data;
    pthread_mutex_lock(&s->mu);
    if (s->pending) {
        if (s->stop)
            ingest_stop(s->ig, its__stopped, s);
        else
            s->rc = s->fn(s->ig, s->arg);
        s->pending = false;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

static void *its__run(void *arg)
{
    its_t *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- the gate (as tests/journal/test_append.c holds a sync) ---- */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_armed, gate_entered, gate_open;

static int its__gated_fdatasync(int fd)
{
    pthread_mutex_lock(&gate_mu);
    if (gate_armed) {
        gate_armed = false;
        gate_entered = true;
        pthread_cond_broadcast(&gate_cv);
        while (!gate_open)
            pthread_cond_wait(&gate_cv, &gate_mu);
    }
    pthread_mutex_unlock(&gate_mu);
    return fdatasync(fd);
}

void its_gate_arm(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_armed = true;
    gate_entered = gate_open = false;
    pthread_mutex_unlock(&gate_mu);
}

void its_gate_wait(void)
{
    pthread_mutex_lock(&gate_mu);
    while (!gate_entered)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

void its_gate_open(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

its_t *its_start(const char *data, const its_opts_t *o)
{
    static const its_opts_t none;
    if (!o)
        o = &none;
    char err[512], jdir[4200];
    its_t *s = tm_calloc(1, sizeof *s);
    cr_assert_not_null(s);
    /* The server writes to agents that may be gone (tidemark serve ignores
     * SIGPIPE the same way). */
    signal(SIGPIPE, SIG_IGN);
    snprintf(jdir, sizeof jdir, "%s/journal", data);
    static const jnl_io_t gate_io = {.fdatasync = its__gated_fdatasync};
    jnl_options_t jo = {.io = o->gated ? &gate_io : NULL};
    int rc = jnl_open(jdir, &jo, &s->jnl);
    cr_assert_eq(rc, 0, "jnl_open: %s", tm_strerror(rc));
    cr_assert_eq(uv_loop_init(&s->loop), 0);
    ingest_options_t io = {.data_dir = data, .listen = "127.0.0.1:0", .retired = o->retired,
                           .nretired = o->nretired};
    rc = ingest_start(&s->loop, s->jnl, &io, &s->ig, err, sizeof err);
    cr_assert_eq(rc, 0, "ingest_start: %s", err);
    char addr[80];
    ingest_address(s->ig, addr, sizeof addr);
    s->port = (unsigned)atoi(strrchr(addr, ':') + 1);
    uv_async_init(&s->loop, &s->call, its__on_call);
    s->call.data = s;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    cr_assert_eq(pthread_create(&s->thread, NULL, its__run, s), 0);
    return s;
}

unsigned its_port(const its_t *s)
{
    return s->port;
}

const char *its_addr(const its_t *s)
{
    static char buf[32];
    snprintf(buf, sizeof buf, "127.0.0.1:%u", s->port);
    return buf;
}

/* Hand the call to the loop thread and wait for it (mu held). */
static void its__wait(its_t *s)
{
    s->pending = true;
    uv_async_send(&s->call);
    while (s->pending)
        pthread_cond_wait(&s->cv, &s->mu);
}

int its_call(its_t *s, int (*fn)(ingest_t *ig, void *arg), void *arg)
{
    pthread_mutex_lock(&s->mu);
    s->fn = fn;
    s->arg = arg;
    its__wait(s);
    int rc = s->rc;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

typedef struct its_req {
    const char *machine, *name, *reason;
    uint8_t kind;
    uint64_t id;
    ingest_machine_info_t *info;
} its_req_t;

static int its__tag(ingest_t *ig, void *arg)
{
    its_req_t *r = arg;
    return ingest_request_tag(ig, r->machine, r->kind, r->id, r->name);
}

int its_request_tag(its_t *s, const char *machine, uint8_t kind, uint64_t id, const char *name)
{
    its_req_t r = {.machine = machine, .kind = kind, .id = id, .name = name};
    return its_call(s, its__tag, &r);
}

static int its__stop(ingest_t *ig, void *arg)
{
    its_req_t *r = arg;
    return ingest_request_stop(ig, r->machine, r->id, r->name, r->reason);
}

int its_request_stop(its_t *s, const char *machine, uint64_t id, const char *name, const char *reason)
{
    its_req_t r = {.machine = machine, .id = id, .name = name, .reason = reason};
    return its_call(s, its__stop, &r);
}

static int its__resume(ingest_t *ig, void *arg)
{
    its_req_t *r = arg;
    return ingest_request_resume(ig, r->machine);
}

int its_request_resume(its_t *s, const char *machine)
{
    its_req_t r = {.machine = machine};
    return its_call(s, its__resume, &r);
}

static int its__retire(ingest_t *ig, void *arg)
{
    its_req_t *r = arg;
    return ingest_retire_machine(ig, r->machine, r->reason);
}

int its_retire(its_t *s, const char *machine, const char *reason)
{
    its_req_t r = {.machine = machine, .reason = reason};
    return its_call(s, its__retire, &r);
}

static int its__machine(ingest_t *ig, void *arg)
{
    its_req_t *r = arg;
    return ingest_machine_state(ig, r->machine, r->info);
}

int its_machine(its_t *s, const char *machine, ingest_machine_info_t *out)
{
    its_req_t r = {.machine = machine, .info = out};
    return its_call(s, its__machine, &r);
}

/* ---- group rounds ---- */

static pthread_mutex_t ans_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ans_cv = PTHREAD_COND_INITIALIZER;
static its_answer_t *ans;
static size_t nans, cap_ans;

void its_group_on_prepared(void *arg, const char *machine, uint64_t round, int status, uint64_t seq,
                           const char *reason)
{
    (void)arg;
    pthread_mutex_lock(&ans_mu);
    if (nans == cap_ans) {
        size_t cap = cap_ans ? 2 * cap_ans : 64;
        its_answer_t *p = realloc(ans, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&ans_mu);
            abort(); /* the loop's thread: no Criterion assertion here */
        }
        ans = p;
        cap_ans = cap;
    }
    its_answer_t *a = &ans[nans++];
    memset(a, 0, sizeof *a);
    snprintf(a->machine, sizeof a->machine, "%s", machine);
    a->round = round;
    a->status = status;
    a->seq = seq;
    snprintf(a->reason, sizeof a->reason, "%s", reason ? reason : "(null)");
    pthread_cond_broadcast(&ans_cv);
    pthread_mutex_unlock(&ans_mu);
}

typedef struct its_grp {
    const char *machine, *name;
    uint64_t round;
    uint8_t kind;
    uint32_t hold_ms;
} its_grp_t;

static int its__prepare(ingest_t *ig, void *arg)
{
    its_grp_t *g = arg;
    return ingest_group_prepare(ig, g->machine, g->round, g->kind, g->hold_ms, g->name, its_group_on_prepared, NULL);
}

int its_group_prepare(its_t *s, const char *machine, uint64_t round, uint8_t kind, uint32_t hold_ms,
                      const char *name)
{
    its_grp_t g = {.machine = machine, .name = name, .round = round, .kind = kind, .hold_ms = hold_ms};
    return its_call(s, its__prepare, &g);
}

static int its__commit(ingest_t *ig, void *arg)
{
    its_grp_t *g = arg;
    return ingest_group_commit(ig, g->machine, g->round);
}

int its_group_commit(its_t *s, const char *machine, uint64_t round)
{
    its_grp_t g = {.machine = machine, .round = round};
    return its_call(s, its__commit, &g);
}

static int its__abort(ingest_t *ig, void *arg)
{
    its_grp_t *g = arg;
    return ingest_group_abort(ig, g->machine, g->round);
}

int its_group_abort(its_t *s, const char *machine, uint64_t round)
{
    its_grp_t g = {.machine = machine, .round = round};
    return its_call(s, its__abort, &g);
}

static const its_answer_t *its__find(const char *machine, uint64_t round)
{
    for (size_t i = 0; i < nans; i++)
        if (ans[i].round == round && (!machine || strcmp(ans[i].machine, machine) == 0))
            return &ans[i];
    return NULL;
}

bool its_group_wait(const char *machine, uint64_t round, int timeout_ms, its_answer_t *out)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&ans_mu);
    const its_answer_t *a;
    int rc = 0;
    while (!(a = its__find(machine, round)) && rc == 0)
        rc = pthread_cond_timedwait(&ans_cv, &ans_mu, &until);
    if (a && out)
        *out = *a;
    pthread_mutex_unlock(&ans_mu);
    return a != NULL;
}

unsigned its_group_answers(const char *machine, uint64_t round)
{
    unsigned n = 0;
    pthread_mutex_lock(&ans_mu);
    for (size_t i = 0; i < nans; i++)
        if (ans[i].round == round && (!machine || strcmp(ans[i].machine, machine) == 0))
            n++;
    pthread_mutex_unlock(&ans_mu);
    return n;
}

unsigned its_group_all_answers(void)
{
    pthread_mutex_lock(&ans_mu);
    unsigned n = (unsigned)nans;
    pthread_mutex_unlock(&ans_mu);
    return n;
}

void its_stop(its_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    its__wait(s);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    cr_assert_eq(uv_loop_close(&s->loop), 0, "a handle was left open");
    jnl_destroy(s->jnl);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    tm_free(s);
}

void its_add_machine(const char *data, const char *name, uint8_t secret[32], char *hex)
{
    char h[INGEST_SECRET_HEX + 1], err[512];
    int rc = ingest_registry_add(data, name, h, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(ingest_hex_decode(h, secret, 32), 0);
    if (hex)
        memcpy(hex, h, sizeof h);
}
