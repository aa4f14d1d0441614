/*
 * The global budget: with ingest.budget at its minimum (1M) and batches
 * bigger than that, every batch journaled puts the server over the budget,
 * so reads pause and resume all through the run. The server's debug lines
 * (TIDEMARK_LOG=debug) show each pause with the bytes queued at that moment:
 * that is the most the journal ever held queued, since nothing more is read
 * from a streaming agent until the queue is under half the budget. Every
 * batch of every agent is still acknowledged and in the journal, in order,
 * byte for byte.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/record.h"
#include "tests/ingest/itx.h"

TestSuite(budget, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

#define DISK_SIZE (64ull << 20)
#define AGENTS 3
#define BATCHES 6
#define RAW (1280u << 10) /* 1.25 MiB: over the 1 MiB budget on its own */
#define BUDGET (1u << 20)

static const wire_disk_t disks[1] = {{"disk0", DISK_SIZE}};

Test(budget, tiny_budget_pauses_and_resumes_reads_and_loses_nothing)
{
    static const char *const names[AGENTS] = {"m0", "m1", "m2"};
    ita_server_t s;
    ita_agent_t a[AGENTS];
    uint8_t secret[AGENTS][32];
    wire_buf_t sent[AGENTS][BATCHES];
    uint64_t next[AGENTS];
    const char *data = tc_path("data");

    memset(sent, 0, sizeof sent);
    for (unsigned k = 0; k < AGENTS; k++)
        ita_add_machine(data, names[k], secret[k]);
    const char *conf = itx_conf("tidemark.conf", "ingest.budget = 1M\n");
    cr_assert_eq(setenv("TIDEMARK_LOG", "debug", 1), 0);
    ita_start(&s, data, (const char *[]){"--config", conf, NULL});
    for (unsigned k = 0; k < AGENTS; k++) {
        ita_connect(&a[k], s.port);
        wire_welcome_t w;
        next[k] = ita_handshake(&a[k], names[k], secret[k], disks, 1, &w);
        cr_assert_eq(next[k], 1);
        cr_assert_geq(w.window_bytes, BATCHES * RAW, "the window must not be what holds the agents back");
    }

    /* All agents stream at once, each without waiting for its acks. */
    for (unsigned i = 0; i < BATCHES; i++) {
        for (unsigned k = 0; k < AGENTS; k++) {
            uint16_t n = itx_batch_raw(&sent[k][i], next[k], RAW, DISK_SIZE, 100 + k);
            ita_send(&a[k], &sent[k][i]);
            next[k] += n;
        }
    }
    for (unsigned k = 0; k < AGENTS; k++) {
        cr_assert_eq(ita_wait_ack(&a[k], next[k] - 1), next[k] - 1, "agent %u", k);
        ita_close(&a[k]);
    }
    ita_stop(&s);

    /* Reads paused and resumed, and each pause came with at most one
     * batch's payload over the budget. */
    unsigned paused = tc_count_lines_with(s.c.err, "over the budget: reads paused");
    unsigned resumed = tc_count_lines_with(s.c.err, "reads resumed");
    cr_assert_geq(paused, 1, "no pause; stderr:\n%s", s.c.err);
    cr_assert_eq(resumed, paused, "%u pauses, %u resumes; stderr:\n%s", paused, resumed, s.c.err);
    uint64_t most = 0;
    for (const char *p = s.c.err; (p = strstr(p, "ingest: ")) != NULL; p++) {
        const char *q = p + strlen("ingest: ");
        char *end;
        uint64_t v = strtoull(q, &end, 10);
        if (end != q && strncmp(end, " bytes queued in the journal, over the budget", 45) == 0 && v > most)
            most = v;
    }
    size_t payload = sent[0][0].len - WIRE_HDR_LEN + INGEST_BATCH_HDR_MAX; /* one batch record */
    cr_log_info("%u pauses; at most %" PRIu64 " bytes queued (budget %u, one batch %zu)", paused, most, BUDGET,
                payload);
    cr_assert_gt(most, BUDGET);
    cr_assert_leq(most, BUDGET + payload, "%" PRIu64 " bytes queued at most", most);

    ita_journal_t j;
    ita_read_journal(data, &j);
    for (unsigned k = 0; k < AGENTS; k++) {
        size_t i = 0;
        for (size_t r = 0; r < j.nb; r++) {
            if (strcmp(j.b[r].machine, names[k]) != 0)
                continue;
            cr_assert_lt(i, BATCHES, "machine %s: more batches than sent", names[k]);
            cr_assert_eq(j.b[r].body_len, sent[k][i].len - WIRE_HDR_LEN, "machine %s batch %zu", names[k], i);
            cr_assert(memcmp(j.b[r].body, sent[k][i].data + WIRE_HDR_LEN, j.b[r].body_len) == 0,
                      "machine %s batch %zu differs", names[k], i);
            i++;
        }
        cr_assert_eq(i, BATCHES, "machine %s: %zu batches in the journal", names[k], i);
    }
    ita_journal_free(&j);
    for (unsigned k = 0; k < AGENTS; k++)
        for (unsigned i = 0; i < BATCHES; i++)
            wire_buf_free(&sent[k][i]);
    tc_child_free(&s.c);
}
