/*
 * The real server takes a stream, makes it durable, acknowledges it, and
 * resumes it after a disconnect or a crash without a gap or a duplicate.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/socket.h>

#include "base/mem.h"
#include "ingest/ingest.h"
#include "tests/ingest/ita.h"

TestSuite(stream, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

#define DISK_SIZE (64ull << 20)

static const wire_disk_t disks[2] = {{"disk0", DISK_SIZE}, {"disk1", 1ull << 30}};

/* Assert the journal holds exactly the batches sent[0..n) of machine, in order, byte for byte. */
static void assert_batches(const ita_journal_t *j, const char *machine, wire_buf_t *sent, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < j->nb; i++) {
        if (strcmp(j->b[i].machine, machine) != 0)
            continue;
        cr_assert_lt(k, n, "more batches of %s in the journal than sent", machine);
        cr_assert_eq(j->b[i].body_len, sent[k].len - WIRE_HDR_LEN, "batch %zu: length", k);
        cr_assert(memcmp(j->b[i].body, sent[k].data + WIRE_HDR_LEN, j->b[i].body_len) == 0, "batch %zu differs", k);
        k++;
    }
    cr_assert_eq(k, n, "%zu batches of %s in the journal, %zu sent", k, machine, n);
}

Test(stream, batches_are_journaled_in_order_and_acknowledged)
{
    ita_server_t s;
    ita_agent_t a;
    uint8_t secret[32];
    wire_buf_t sent[6] = {{0}};
    const char *data = tc_path("data");

    ita_add_machine(data, "web1", secret);
    ita_start(&s, data, NULL);
    ita_connect(&a, s.port);
    wire_welcome_t w;
    cr_assert_eq(ita_handshake(&a, "web1", secret, disks, 2, &w), 1);
    cr_assert_eq(w.window_bytes, 16u << 20);
    cr_assert_eq(w.max_batch_data, WIRE_MAX_BATCH_DATA);

    uint64_t seq = 1;
    for (unsigned i = 0; i < 6; i++) {
        uint16_t count = (uint16_t)(1 + i * 37);
        ita_batch(&sent[i], seq, count, DISK_SIZE, 7, i % 2 == 0);
        ita_send(&a, &sent[i]);
        seq += count;
    }
    cr_assert_eq(ita_wait_ack(&a, seq - 1), seq - 1);
    ita_close(&a);
    ita_stop(&s);
    tc_child_free(&s.c);

    ita_journal_t j;
    ita_read_journal(data, &j);
    cr_assert_eq(j.disks_records, 1);
    cr_assert_str_eq(j.disks_machine[0], "web1");
    assert_batches(&j, "web1", sent, 6);
    ita_journal_free(&j);
    for (unsigned i = 0; i < 6; i++)
        wire_buf_free(&sent[i]);
}

Test(stream, resume_after_disconnect_names_the_next_sequence)
{
    ita_server_t s;
    ita_agent_t a;
    uint8_t secret[32];
    wire_buf_t sent[4] = {{0}};
    const char *data = tc_path("data");

    ita_add_machine(data, "db1", secret);
    ita_start(&s, data, NULL);

    ita_connect(&a, s.port);
    cr_assert_eq(ita_handshake(&a, "db1", secret, disks, 1, NULL), 1);
    ita_batch(&sent[0], 1, 10, DISK_SIZE, 1, true);
    ita_batch(&sent[1], 11, 5, DISK_SIZE, 2, false);
    ita_send(&a, &sent[0]);
    ita_send(&a, &sent[1]);
    /* Gone without waiting for the ACK: the server still makes both durable
     * and, once they settled, names 16 to the next session. */
    ita_close(&a);

    cr_assert_eq(ita_reconnect(&a, s.port, "db1", secret, disks, 1, NULL), 16);
    ita_batch(&sent[2], 16, 3, DISK_SIZE, 3, true);
    ita_send(&a, &sent[2]);
    cr_assert_eq(ita_wait_ack(&a, 18), 18);
    ita_close(&a);

    /* The server restarted: the journal alone tells it where db1 is. */
    ita_stop(&s);
    tc_child_free(&s.c);
    ita_start(&s, data, NULL);
    ita_connect(&a, s.port);
    cr_assert_eq(ita_handshake(&a, "db1", secret, disks, 1, NULL), 19);
    ita_batch(&sent[3], 19, 1, DISK_SIZE, 4, false);
    ita_send(&a, &sent[3]);
    cr_assert_eq(ita_wait_ack(&a, 19), 19);
    ita_close(&a);
    ita_stop(&s);
    tc_child_free(&s.c);

    ita_journal_t j;
    ita_read_journal(data, &j);
    cr_assert_eq(j.disks_records, 1, "the disks are written once");
    assert_batches(&j, "db1", sent, 4);
    ita_journal_free(&j);
    for (unsigned i = 0; i < 4; i++)
        wire_buf_free(&sent[i]);
}

Test(stream, machine_added_while_serving_can_connect)
{
    ita_server_t s;
    ita_agent_t a;
    uint8_t secret[32];
    const char *data = tc_path("data");

    ita_add_machine(data, "first", secret);
    ita_start(&s, data, NULL);
    ita_add_machine(data, "later", secret);
    ita_connect(&a, s.port);
    cr_assert_eq(ita_handshake(&a, "later", secret, disks, 1, NULL), 1);
    ita_close(&a);
    ita_stop(&s);
    tc_child_free(&s.c);
}

/*
 * SIGKILL while batches are in flight, restart, reconnect: every acked
 * batch is there, the server names a sequence past the last ack (batches it
 * made durable without acking are kept, and the agent resumes after them),
 * and after resuming the journal is gapless and duplicate-free.
 *
 * The kill may land after all NB batches were durable (often, on a loaded
 * machine): then nothing is resent, and the protocol owes no ACK for a
 * session that sent nothing. So the resumed session always sends one new
 * batch past the end and waits for that ACK.
 */
Test(stream, sigkill_mid_stream_keeps_every_acked_batch)
{
    enum { NB = 40, PER = 16 };
    ita_server_t s;
    ita_agent_t a;
    uint8_t secret[32];
    wire_buf_t *sent = tm_calloc(NB + 4, sizeof *sent);
    const char *data = tc_path("data");

    ita_add_machine(data, "vm", secret);
    ita_start(&s, data, NULL);
    ita_connect(&a, s.port);
    cr_assert_eq(ita_handshake(&a, "vm", secret, disks, 1, NULL), 1);
    for (unsigned i = 0; i < NB; i++) {
        ita_batch(&sent[i], 1 + (uint64_t)i * PER, PER, DISK_SIZE, 11, i % 3 == 0);
        ita_send(&a, &sent[i]);
        if (i == 4)
            ita_wait_ack(&a, 1); /* the first durable point, then more in flight */
    }
    uint64_t acked = ita_wait_ack(&a, 1);
    ita_kill(&s);
    ita_close(&a);
    tc_child_free(&s.c);

    ita_start(&s, data, NULL);
    ita_connect(&a, s.port);
    uint64_t next = ita_handshake(&a, "vm", secret, disks, 1, NULL);
    cr_assert_geq(next, acked + 1, "next_seq %llu, but %llu was acked", (unsigned long long)next,
                  (unsigned long long)acked);
    cr_assert_eq((next - 1) % PER, 0, "next_seq %llu is not at a batch boundary", (unsigned long long)next);
    size_t have = (size_t)((next - 1) / PER);
    cr_assert_leq(have, NB);
    /* Resume from there with the same batches. */
    size_t total = have;
    for (size_t i = have; i < NB; i++) {
        ita_send(&a, &sent[i]);
        total++;
    }
    ita_batch(&sent[NB], 1 + (uint64_t)NB * PER, PER, DISK_SIZE, 12, false);
    ita_send(&a, &sent[NB]);
    total++;
    cr_assert_eq(ita_wait_ack(&a, (uint64_t)total * PER), (uint64_t)total * PER);
    ita_close(&a);
    ita_stop(&s);
    tc_child_free(&s.c);

    ita_journal_t j;
    ita_read_journal(data, &j);
    assert_batches(&j, "vm", sent, NB + 1);
    ita_journal_free(&j);
    for (unsigned i = 0; i <= NB; i++)
        wire_buf_free(&sent[i]);
    tm_free(sent);
}

/*
 * More frames in one read than INGEST_FRAMES_PER_TURN: the server decodes a
 * turn's worth, keeps the rest as pending bytes, stops reading and finishes
 * them from its idle handle. All the frames go out in one send() (well under
 * a loopback segment, so they arrive together), and every one must be
 * journaled and acknowledged; a lost continuation would leave the ACK
 * missing. Then the connection must read again: one more batch, one more ACK.
 */
Test(stream, more_frames_in_one_read_than_a_turn_takes)
{
    enum { NF = 40 + INGEST_FRAMES_PER_TURN / 2 };
    ita_server_t s;
    ita_agent_t a;
    uint8_t secret[32];
    wire_buf_t *sent = tm_calloc(NF + 1, sizeof *sent);
    wire_buf_t all = {0};
    const char *data = tc_path("data");

    cr_assert_gt(NF, 2 * INGEST_FRAMES_PER_TURN, "the frames must need more than two turns");
    ita_add_machine(data, "burst", secret);
    ita_start(&s, data, NULL);
    ita_connect(&a, s.port);
    cr_assert_eq(ita_handshake(&a, "burst", secret, disks, 1, NULL), 1);
    for (unsigned i = 0; i < NF; i++) {
        ita_batch(&sent[i], 1 + i, 1, DISK_SIZE, 21, true);
        wire_put_bytes(&all, sent[i].data, sent[i].len);
    }
    cr_assert(!all.oom);
    cr_assert_lt(all.len, 60000u, "%zu bytes may not arrive in one read", all.len);
    ssize_t w = send(a.fd, all.data, all.len, MSG_NOSIGNAL);
    cr_assert_eq(w, (ssize_t)all.len, "one send() took %zd of %zu bytes", w, all.len);
    cr_assert_eq(ita_wait_ack(&a, NF), NF);

    ita_batch(&sent[NF], 1 + NF, 1, DISK_SIZE, 22, false);
    ita_send(&a, &sent[NF]);
    cr_assert_eq(ita_wait_ack(&a, NF + 1), NF + 1);
    ita_close(&a);
    ita_stop(&s);
    tc_child_free(&s.c);

    ita_journal_t j;
    ita_read_journal(data, &j);
    assert_batches(&j, "burst", sent, NF + 1);
    ita_journal_free(&j);
    for (unsigned i = 0; i <= NF; i++)
        wire_buf_free(&sent[i]);
    wire_buf_free(&all);
    tm_free(sent);
}
