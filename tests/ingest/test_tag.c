/*
 * ingest_request_tag: the appliance asks a machine's agent for a tag. The
 * ingest server runs in this process (its.c: a real journal in a scratch
 * folder, its loop on a thread of its own, every call made on that thread),
 * the agent is the blocking wire-codec agent of ita.c over
 * loopback. A connected agent receives the TAG_REQUEST as asked; a machine
 * without a streaming agent gets TM_ECLOSED, an unknown one TM_ENOTFOUND.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "ingest/ingest.h"
#include "tests/ingest/ita.h"
#include "tests/ingest/its.h"

TestSuite(ingest_tag, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

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
    its_add_machine(data, "web1", secret, NULL);
    its_t *s = its_start(data, NULL);
    ita_agent_t a;
    ita_connect(&a, its_port(s));
    wire_welcome_t w;
    ita_handshake(&a, "web1", secret, &disk0, 1, &w);

    cr_assert_eq(its_request_tag(s, "web1", WIRE_TAG_APP, 77, "before-upgrade"), 0);
    uint8_t kind;
    uint64_t id;
    char name[WIRE_MAX_NAME + 1];
    expect_tag_request(&a, &kind, &id, name);
    cr_assert_eq(kind, WIRE_TAG_APP);
    cr_assert_eq(id, 77);
    cr_assert_str_eq(name, "before-upgrade");

    cr_assert_eq(its_request_tag(s, "web1", WIRE_TAG_CRASH, 78, "c-1"), 0);
    expect_tag_request(&a, &kind, &id, name);
    cr_assert_eq(kind, WIRE_TAG_CRASH);
    cr_assert_eq(id, 78);
    cr_assert_str_eq(name, "c-1");

    /* What the wire could not carry is refused before anything is sent. */
    cr_assert_eq(its_request_tag(s, "web1", WIRE_TAG_APP, 79, "../x"), TM_EINVAL);
    cr_assert_eq(its_request_tag(s, "web1", WIRE_TAG_APP, 79, ""), TM_EINVAL);
    cr_assert_eq(its_request_tag(s, "web1", WIRE_TAG_GROUP, 79, "g"), TM_EINVAL);
    cr_assert_eq(its_request_tag(s, "web1", 9, 79, "g"), TM_EINVAL);
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
    its_stop(s);
}

Test(ingest_tag, a_machine_without_a_streaming_agent_is_closed_an_unknown_one_not_found)
{
    const char *data = tc_path("data");
    cr_assert_eq(mkdir(data, 0700), 0);
    uint8_t secret[32], secret_db[32];
    its_add_machine(data, "web1", secret, NULL);
    its_add_machine(data, "db", secret_db, NULL);
    its_t *s = its_start(data, NULL);

    cr_assert_eq(its_request_tag(s, "nope", WIRE_TAG_APP, 1, "t"), TM_ENOTFOUND);
    cr_assert_eq(its_request_tag(s, "..", WIRE_TAG_APP, 1, "t"), TM_ENOTFOUND);
    /* Registered, never connected. */
    cr_assert_eq(its_request_tag(s, "db", WIRE_TAG_APP, 1, "t"), TM_ECLOSED);

    /* Connected but not through its handshake: not yet an agent to ask. */
    ita_agent_t a;
    ita_connect(&a, its_port(s));
    uint8_t nonce[WIRE_NONCE_LEN];
    ita_hello(&a, "db", &disk0, 1, nonce);
    cr_assert_eq(its_request_tag(s, "db", WIRE_TAG_APP, 1, "t"), TM_ECLOSED);
    ita_close(&a);

    /* Streaming, then gone: closed again once the server saw it go. */
    wire_welcome_t w;
    ita_connect(&a, its_port(s));
    ita_handshake(&a, "web1", secret, &disk0, 1, &w);
    cr_assert_eq(its_request_tag(s, "web1", WIRE_TAG_APP, 2, "t"), 0);
    ita_close(&a);
    uint64_t deadline = tm_mono_ns() + (uint64_t)ITA_WAIT_MS * 1000000u;
    int rc;
    while ((rc = its_request_tag(s, "web1", WIRE_TAG_APP, 3, "t")) == 0 && tm_mono_ns() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling for the server to notice the close, with a deadline */
    }
    cr_assert_eq(rc, TM_ECLOSED, "%s", tm_errname(rc));
    its_stop(s);
}
