/*
 * The handshake timeout (ingest.handshake_timeout, here 500 ms): a
 * connection that never sends HELLO, or sends HELLO but never AUTH, gets
 * ERROR(protocol) "handshake timeout" and is closed; an agent that finished
 * its handshake may then stay idle far longer and is not dropped. The
 * setting's values are checked when the config is read.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "tests/ingest/itx.h"

TestSuite(handshake, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

#define DISK_SIZE (16ull << 20)

static const wire_disk_t disks[1] = {{"disk0", DISK_SIZE}};

Test(handshake, unfinished_handshakes_time_out_idle_sessions_do_not)
{
    ita_server_t s;
    ita_agent_t idle, silent, stalled;
    uint8_t secret[32], nonce[WIRE_NONCE_LEN];
    wire_buf_t b = {0};
    wire_error_t e;
    const char *data = tc_path("data");

    ita_add_machine(data, "idle", secret);
    ita_add_machine(data, "stalled", (uint8_t[32]){0});
    const char *conf = itx_conf("tidemark.conf", "ingest.handshake_timeout = 500ms\n");
    ita_start(&s, data, (const char *[]){"--config", conf, NULL});

    ita_connect(&idle, s.port);
    cr_assert_eq(ita_handshake(&idle, "idle", secret, disks, 1, NULL), 1);
    ita_batch(&b, 1, 4, DISK_SIZE, 1, true);
    ita_send(&idle, &b);
    cr_assert_eq(ita_wait_ack(&idle, 4), 4);

    /* Connected after the idle agent's last word: when their timeouts have
     * fired, it has been idle longer than the timeout. */
    ita_connect(&silent, s.port);
    ita_connect(&stalled, s.port);
    ita_hello(&stalled, "stalled", disks, 1, nonce);

    itx_expect_error(&silent, WIRE_E_PROTOCOL, &e);
    cr_assert(strstr(e.text, "handshake timeout") && strstr(e.text, "no HELLO within 500 ms"), "ERROR text: %s",
              e.text);
    ita_close(&silent);
    itx_expect_error(&stalled, WIRE_E_PROTOCOL, &e);
    cr_assert(strstr(e.text, "handshake timeout") && strstr(e.text, "no AUTH within 500 ms"), "ERROR text: %s",
              e.text);
    ita_close(&stalled);

    /* The idle session heard nothing and still streams. */
    cr_assert(itx_quiet(&idle), "the idle agent was sent something or closed");
    ita_batch(&b, 5, 6, DISK_SIZE, 2, false);
    ita_send(&idle, &b);
    cr_assert_eq(ita_wait_ack(&idle, 10), 10);
    ita_close(&idle);
    ita_stop(&s);
    cr_assert_eq(tc_count_lines_with(s.c.err, "handshake timeout"), 2, "stderr:\n%s", s.c.err);

    ita_journal_t j;
    ita_read_journal(data, &j);
    cr_assert_eq(ita_count_batches(&j, "idle"), 2);
    cr_assert_eq(j.disks_records, 1, "the stalled machine never got as far as its disks record");
    ita_journal_free(&j);
    wire_buf_free(&b);
    tc_child_free(&s.c);
}

Test(handshake, timeout_values_are_checked)
{
    static const struct {
        const char *text;
        const char *why; /* NULL: accepted */
    } cases[] = {
        {"ingest.handshake_timeout = 30s\n", NULL},
        {"ingest.handshake_timeout = 250ms\n", NULL},
        {"ingest.handshake_timeout = 1500\n", NULL},
        {"ingest.handshake_timeout = 99ms\n", "below the minimum of 100 ms"},
        {"ingest.handshake_timeout = 0\n", "below the minimum"},
        {"ingest.handshake_timeout = 3601s\n", "above the maximum of 3600 s"},
        {"ingest.handshake_timeout = 99999999999999999999\n", "above the maximum"},
        {"ingest.handshake_timeout = 2h\n", "not a duration"},
        {"ingest.handshake_timeout = s\n", "not a duration"},
        {"ingest.handshake_timeout = 10 s\n", "not a duration"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *conf = itx_conf("t.conf", cases[i].text);
        if (!cases[i].why) {
            ita_server_t s;
            ita_start(&s, tc_path("data"), (const char *[]){"--config", conf, NULL});
            ita_stop(&s);
            tc_child_free(&s.c);
            continue;
        }
        tc_child_t c;
        int code = tc_run(&c, (const char *[]){"serve", "--config", conf, "--data", tc_path("data"), NULL});
        cr_assert_eq(code, 2, "case %zu: exit %d; stderr:\n%s", i, code, c.err);
        cr_assert(strstr(c.err, "t.conf:1:") && strstr(c.err, cases[i].why), "case %zu: stderr:\n%s", i, c.err);
        tc_child_free(&c);
    }
}
