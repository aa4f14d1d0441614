/*
 * The window: an agent may keep at most WELCOME's window_bytes of raw data
 * unacknowledged. One that sends more broke the contract: it gets
 * ERROR(protocol) naming the window and its connection closes; nothing of
 * the batch is kept, and an agent of another machine streams on.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "tests/ingest/itx.h"

TestSuite(window, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

#define DISK_SIZE (64ull << 20)
#define WINDOW (1u << 20)

static const wire_disk_t disks[1] = {{"disk0", DISK_SIZE}};

Test(window, more_than_the_window_unacknowledged_is_a_protocol_error)
{
    ita_server_t s;
    ita_agent_t good, greedy;
    uint8_t gsecret[32], xsecret[32];
    wire_buf_t b = {0}, kept = {0};
    wire_welcome_t w;
    const char *data = tc_path("data");

    ita_add_machine(data, "good", gsecret);
    ita_add_machine(data, "greedy", xsecret);
    const char *conf = itx_conf("tidemark.conf", "ingest.window = 1M\n");
    ita_start(&s, data, (const char *[]){"--config", conf, NULL});

    ita_connect(&good, s.port);
    cr_assert_eq(ita_handshake(&good, "good", gsecret, disks, 1, &w), 1);
    cr_assert_eq(w.window_bytes, WINDOW);
    cr_assert_eq(w.max_batch_data, WINDOW, "a batch never needs more than the window");
    ita_batch(&b, 1, 20, DISK_SIZE, 1, true);
    ita_send(&good, &b);
    cr_assert_eq(ita_wait_ack(&good, 20), 20);

    ita_connect(&greedy, s.port);
    cr_assert_eq(ita_handshake(&greedy, "greedy", xsecret, disks, 1, &w), 1);
    /* Exactly the window is within the contract. */
    uint16_t n = itx_batch_raw(&kept, 1, WINDOW, DISK_SIZE, 2);
    ita_send(&greedy, &kept);
    cr_assert_eq(ita_wait_ack(&greedy, n), n);
    /* One sector more is not. */
    itx_batch_raw(&b, 1u + n, WINDOW + 512, DISK_SIZE, 3);
    ita_send(&greedy, &b);
    wire_error_t e;
    itx_expect_error(&greedy, WIRE_E_PROTOCOL, &e);
    char want[64];
    snprintf(want, sizeof want, "over the window of %u", WINDOW);
    cr_assert(strstr(e.text, want), "ERROR text: %s", e.text);
    ita_close(&greedy);

    /* The other machine's agent never noticed. */
    cr_assert(itx_quiet(&good), "the good agent got something it did not ask for");
    ita_batch(&b, 21, 30, DISK_SIZE, 4, false);
    ita_send(&good, &b);
    cr_assert_eq(ita_wait_ack(&good, 50), 50);
    ita_close(&good);
    ita_stop(&s);
    cr_assert(strstr(s.c.err, "over the window"), "the refusal is logged; stderr:\n%s", s.c.err);

    ita_journal_t j;
    ita_read_journal(data, &j);
    cr_assert_eq(ita_count_batches(&j, "good"), 2);
    cr_assert_eq(ita_count_batches(&j, "greedy"), 1, "the batch over the window was kept");
    for (size_t i = 0; i < j.nb; i++) {
        if (strcmp(j.b[i].machine, "greedy") == 0) {
            cr_assert_eq(j.b[i].body_len, kept.len - WIRE_HDR_LEN);
            cr_assert(memcmp(j.b[i].body, kept.data + WIRE_HDR_LEN, j.b[i].body_len) == 0);
        }
    }
    ita_journal_free(&j);
    wire_buf_free(&b);
    wire_buf_free(&kept);
    tc_child_free(&s.c);
}
