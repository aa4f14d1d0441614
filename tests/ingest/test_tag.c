/*
 * ingest_request_tag: the appliance asks a machine's agent for a tag. The
 * ingest server runs in this process (a real journal in a scratch folder,
 * its loop on a thread of its own, every call made on that thread through a
 * uv_async), the agent is the blocking wire-codec agent of ita.c over
 * loopback. A connected agent receives the TAG_REQUEST as asked; a machine
 * without a streaming agent gets TM_ECLOSED, an unknown one TM_ENOTFOUND.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "base/clock.h"
#include "base/err.h"
#include "ingest/ingest.h"
#include "ingest/registry.h"
#include "journal/journal.h"
#include "tests/ingest/ita.h"

TestSuite(ingest_tag, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

/* The server and what the test asks of its loop thread. */
typedef struct srv {
    uv_loop_t loop;
    uv_async_t call;
    jnl_t *jnl;
    ingest_t *ig;
    unsigned port;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* one call at a time */
    bool pending, stop;
    char machine[80];
    uint8_t kind;
    uint64_t id;
    char name[80];
    int rc;
} srv_t;

static void on_stopped(void *arg)
{
    srv_t *s = arg;
    uv_close((uv_handle_t *)&s->call, NULL);
}

static void on_call(uv_async_t *h)
{
    srv_t *s = h->data;
    pthread_mutex_lock(&s->mu);
    if (s->pending) {
        if (s->stop) {
            ingest_stop(s->ig, on_stopped, s);
        } else {
            /* ingest's functions belong to its loop thread: this one. */
            s->rc = ingest_request_tag(s->ig, s->machine, s->kind, s->id, s->name);
        }
        s->pending = false;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

static void *run(void *arg)
{
    srv_t *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void start(srv_t *s, const char *data)
{
    char err[512], jdir[4200];
    memset(s, 0, sizeof *s);
    /* The server writes to agents that may be gone (tidemark serve ignores
     * SIGPIPE the same way). */
    signal(SIGPIPE, SIG_IGN);
    snprintf(jdir, sizeof jdir, "%s/journal", data);
    jnl_options_t jo = {0};
    int rc = jnl_open(jdir, &jo, &s->jnl);
    cr_assert_eq(rc, 0, "jnl_open: %s", tm_strerror(rc));
    cr_assert_eq(uv_loop_init(&s->loop), 0);
    ingest_options_t io = {.data_dir = data, .listen = "127.0.0.1:0"};
    rc = ingest_start(&s->loop, s->jnl, &io, &s->ig, err, sizeof err);
    cr_assert_eq(rc, 0, "ingest_start: %s", err);
    char addr[80];
    ingest_address(s->ig, addr, sizeof addr);
    s->port = (unsigned)atoi(strrchr(addr, ':') + 1);
    uv_async_init(&s->loop, &s->call, on_call);
    s->call.data = s;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    cr_assert_eq(pthread_create(&s->thread, NULL, run, s), 0);
}

/* Run a call on the loop thread and wait for it. */
static void call(srv_t *s)
{
    s->pending = true;
    uv_async_send(&s->call);
    while (s->pending)
        pthread_cond_wait(&s->cv, &s->mu);
}

static int request_tag(srv_t *s, const char *machine, uint8_t kind, uint64_t id, const char *name)
{
    pthread_mutex_lock(&s->mu);
    snprintf(s->machine, sizeof s->machine, "%s", machine);
    s->kind = kind;
    s->id = id;
    snprintf(s->name, sizeof s->name, "%s", name);
    call(s);
    int rc = s->rc;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void stop(srv_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    call(s);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    cr_assert_eq(uv_loop_close(&s->loop), 0, "a handle was left open");
    jnl_destroy(s->jnl);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}

static void add_machine(const char *data, const char *name, uint8_t secret[32])
{
    char hex[INGEST_SECRET_HEX + 1], err[512];
    int rc = ingest_registry_add(data, name, hex, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(ingest_hex_decode(hex, secret, 32), 0);
}

static const wire_disk_t disk0 = {.name = "disk0", .size = 1 << 20};

/* Read frames (ACKs may come first) until a TAG_REQUEST; its fields out. */
static void expect_tag_request(ita_agent_t *a, uint8_t *kind, uint64_t *id, char name[WIRE_MAX_NAME + 1])
{
    char reason[160];
    for (;;) {
        cr_assert(ita_recv(a), "the server closed the connection");
        if (a->type == WIRE_T_ACK)
            continue;
        cr_assert_eq(a->type, WIRE_T_TAG_REQUEST, "frame type 0x%x", a->type);
        int rc = wire_dec_tag_request(a->body, a->body_len, kind, id, name, reason, sizeof reason);
        cr_assert_eq(rc, 0, "%s", reason);
        return;
    }
}

Test(ingest_tag, the_request_reaches_the_connected_agent)
{
    const char *data = tc_path("data");
    cr_assert_eq(mkdir(data, 0700), 0);
    uint8_t secret[32];
    add_machine(data, "web1", secret);
    srv_t s;
    start(&s, data);
    ita_agent_t a;
    ita_connect(&a, s.port);
    wire_welcome_t w;
    ita_handshake(&a, "web1", secret, &disk0, 1, &w);

    cr_assert_eq(request_tag(&s, "web1", WIRE_TAG_APP, 77, "before-upgrade"), 0);
    uint8_t kind;
    uint64_t id;
    char name[WIRE_MAX_NAME + 1];
    expect_tag_request(&a, &kind, &id, name);
    cr_assert_eq(kind, WIRE_TAG_APP);
    cr_assert_eq(id, 77);
    cr_assert_str_eq(name, "before-upgrade");

    cr_assert_eq(request_tag(&s, "web1", WIRE_TAG_CRASH, 78, "c-1"), 0);
    expect_tag_request(&a, &kind, &id, name);
    cr_assert_eq(kind, WIRE_TAG_CRASH);
    cr_assert_eq(id, 78);
    cr_assert_str_eq(name, "c-1");

    /* What the wire could not carry is refused before anything is sent. */
    cr_assert_eq(request_tag(&s, "web1", WIRE_TAG_APP, 79, "../x"), TM_EINVAL);
    cr_assert_eq(request_tag(&s, "web1", WIRE_TAG_APP, 79, ""), TM_EINVAL);
    cr_assert_eq(request_tag(&s, "web1", WIRE_TAG_GROUP, 79, "g"), TM_EINVAL);
    cr_assert_eq(request_tag(&s, "web1", 9, 79, "g"), TM_EINVAL);
    /* The agent got nothing more, and the session is still good: a batch
     * is acknowledged. */
    wire_buf_t b = {0};
    ita_batch(&b, w.next_seq, 4, disk0.size, 1, false);
    ita_send(&a, &b);
    wire_buf_free(&b);
    for (;;) {
        cr_assert(ita_recv(&a));
        cr_assert_eq(a.type, WIRE_T_ACK, "frame type 0x%x", a.type);
        uint64_t durable;
        char reason[160];
        cr_assert_eq(wire_dec_ack(a.body, a.body_len, &durable, reason, sizeof reason), 0);
        if (durable >= w.next_seq + 3)
            break;
    }
    ita_close(&a);
    stop(&s);
}

Test(ingest_tag, a_machine_without_a_streaming_agent_is_closed_an_unknown_one_not_found)
{
    const char *data = tc_path("data");
    cr_assert_eq(mkdir(data, 0700), 0);
    uint8_t secret[32], secret_db[32];
    add_machine(data, "web1", secret);
    add_machine(data, "db", secret_db);
    srv_t s;
    start(&s, data);

    cr_assert_eq(request_tag(&s, "nope", WIRE_TAG_APP, 1, "t"), TM_ENOTFOUND);
    cr_assert_eq(request_tag(&s, "..", WIRE_TAG_APP, 1, "t"), TM_ENOTFOUND);
    /* Registered, never connected. */
    cr_assert_eq(request_tag(&s, "db", WIRE_TAG_APP, 1, "t"), TM_ECLOSED);

    /* Connected but not through its handshake: not yet an agent to ask. */
    ita_agent_t a;
    ita_connect(&a, s.port);
    uint8_t nonce[WIRE_NONCE_LEN];
    ita_hello(&a, "db", &disk0, 1, nonce);
    cr_assert_eq(request_tag(&s, "db", WIRE_TAG_APP, 1, "t"), TM_ECLOSED);
    ita_close(&a);

    /* Streaming, then gone: closed again once the server saw it go. */
    wire_welcome_t w;
    ita_connect(&a, s.port);
    ita_handshake(&a, "web1", secret, &disk0, 1, &w);
    cr_assert_eq(request_tag(&s, "web1", WIRE_TAG_APP, 2, "t"), 0);
    ita_close(&a);
    uint64_t deadline = tm_mono_ns() + (uint64_t)ITA_WAIT_MS * 1000000u;
    int rc;
    while ((rc = request_tag(&s, "web1", WIRE_TAG_APP, 3, "t")) == 0 && tm_mono_ns() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling for the server to notice the close, with a deadline */
    }
    cr_assert_eq(rc, TM_ECLOSED, "%s", tm_errname(rc));
    stop(&s);
}
