/* The ordered stream: numbering, batching limits, the window, acks, resume
 * points and the memory bound. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "agent/stream.h"
#include "base/err.h"
#include "base/mem.h"
#include "wire/msg.h"
#include "wire/wire.h"

static uint8_t data[WIRE_MAX_WRITE];
static wire_records_t recs;
static uint8_t scratch[WIRE_MAX_BATCH_DATA];

static void fill(void)
{
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + i / 4096);
}

/* Decode the one RECORDS frame in b (asserting it is whole and valid). */
static void decode_batch(wire_buf_t *b)
{
    wire_decoder_t d;
    size_t used = 0;
    wire_decoder_init(&d);
    cr_assert_eq(wire_decode(&d, b->data, b->len, &used), WIRE_FRAME);
    cr_assert_eq(used, b->len, "one frame exactly");
    cr_assert_eq(d.hdr.type, WIRE_T_RECORDS);
    char reason[160];
    int rc = wire_dec_records(d.body, d.hdr.body_len, &recs, scratch, reason, sizeof reason);
    cr_assert_eq(rc, 0, "records: %s", reason);
    /* the entries point into the decoder or scratch: copy out what tests use */
    wire_decoder_free(&d);
}

Test(stream, numbers_from_one_without_gaps)
{
    agent_stream_t s;
    fill();
    cr_assert_eq(agent_stream_init(&s, 1, 0), 0);
    for (uint64_t i = 1; i <= 100; i++) {
        uint64_t seq = 0;
        cr_assert_eq(agent_stream_write(&s, 0, i * 512, data, 512, &seq), 0);
        cr_assert_eq(seq, i);
    }
    uint64_t seq = 0;
    cr_assert_eq(agent_stream_tag(&s, WIRE_TAG_APP, 9, "nightly", false, &seq), 0);
    cr_assert_eq(seq, 101);
    cr_assert_eq(agent_stream_flush(&s, false, &seq), 0);
    cr_assert_eq(seq, 102);
    cr_assert_eq(agent_stream_zero(&s, 1, 0, 4096, &seq), 0);
    cr_assert_eq(agent_stream_trim(&s, 1, 4096, 4096, &seq), 0);
    cr_assert_eq(seq, 104);
    cr_assert_eq(s.count, 104);
    cr_assert_not(agent_stream_all_acked(&s));
    agent_stream_free(&s);
}

Test(stream, refuses_what_the_protocol_cannot_carry)
{
    agent_stream_t s;
    cr_assert_eq(agent_stream_init(&s, 1, 0), 0);
    cr_assert_eq(agent_stream_init(&(agent_stream_t){0}, 0, 0), TM_EINVAL);
    cr_assert_eq(agent_stream_write(&s, 0, 100, data, 512, NULL), TM_EINVAL, "unaligned offset");
    cr_assert_eq(agent_stream_write(&s, 0, 0, data, 100, NULL), TM_EINVAL, "unaligned length");
    cr_assert_eq(agent_stream_write(&s, 0, 0, data, 0, NULL), TM_EINVAL, "empty write");
    cr_assert_eq(agent_stream_write(&s, 0, 0, data, WIRE_MAX_WRITE + 512, NULL), TM_EINVAL, "over 1 MiB");
    cr_assert_eq(agent_stream_tag(&s, WIRE_TAG_APP, 1, "bad name", false, NULL), TM_EINVAL);
    cr_assert_eq(agent_stream_tag(&s, 9, 1, "ok", false, NULL), TM_EINVAL, "unknown tag kind");
    cr_assert_eq(s.next_seq, 1, "nothing was numbered");
    agent_stream_free(&s);
}

Test(stream, batches_keep_order_and_content)
{
    agent_stream_t s;
    wire_buf_t b = {0};
    fill();
    cr_assert_eq(agent_stream_init(&s, 1, 0), 0);
    for (uint32_t i = 0; i < 10; i++)
        cr_assert_eq(agent_stream_write(&s, (uint16_t)(i % 3), i * 4096ull, data + i * 512, 4096, NULL), 0);
    cr_assert_eq(agent_stream_tag(&s, WIRE_TAG_CRASH, 77, "t1", false, NULL), 0);
    int n = agent_stream_next_batch(&s, &b, 1 << 20, 1 << 20, true);
    cr_assert_eq(n, 11);
    decode_batch(&b);
    cr_assert_eq(recs.first_seq, 1);
    cr_assert_eq(recs.count, 11);
    for (uint32_t i = 0; i < 10; i++) {
        cr_assert_eq(recs.entries[i].kind, WIRE_R_WRITE);
        cr_assert_eq(recs.entries[i].disk, i % 3);
        cr_assert_eq(recs.entries[i].offset, i * 4096ull);
        cr_assert_eq(memcmp(recs.entries[i].data, data + i * 512, 4096), 0);
    }
    cr_assert_eq(recs.entries[10].kind, WIRE_R_TAG);
    cr_assert_eq(recs.entries[10].id, 77);
    cr_assert_eq(memcmp(recs.entries[10].data, "t1", 2), 0);
    cr_assert_eq(s.sent_seq, 11);
    cr_assert_not(agent_stream_has_unsent(&s));
    wire_buf_reset(&b);
    cr_assert_eq(agent_stream_next_batch(&s, &b, 1 << 20, 1 << 20, true), 0, "nothing left to send");
    wire_buf_free(&b);
    agent_stream_free(&s);
}

Test(stream, batch_limits_data_and_count)
{
    agent_stream_t s;
    wire_buf_t b = {0};
    cr_assert_eq(agent_stream_init(&s, 1, 256u << 20), 0);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(agent_stream_write(&s, 0, 0, data, 64 << 10, NULL), 0);
    /* 256 KiB of data per batch: 4 writes of 64 KiB */
    cr_assert_eq(agent_stream_next_batch(&s, &b, 256 << 10, 64 << 20, false), 4);
    wire_buf_reset(&b);
    cr_assert_eq(agent_stream_next_batch(&s, &b, 256 << 10, 64 << 20, false), 4);
    decode_batch(&b);
    cr_assert_eq(recs.first_seq, 5);
    wire_buf_free(&b);
    agent_stream_free(&s);

    /* the record count limit: records without data */
    cr_assert_eq(agent_stream_init(&s, 1, 256u << 20), 0);
    for (unsigned i = 0; i < WIRE_MAX_BATCH_RECORDS + 10; i++)
        cr_assert_eq(agent_stream_flush(&s, false, NULL), 0);
    wire_buf_t b2 = {0};
    cr_assert_eq(agent_stream_next_batch(&s, &b2, 1 << 20, 1 << 20, false), (int)WIRE_MAX_BATCH_RECORDS);
    wire_buf_reset(&b2);
    cr_assert_eq(agent_stream_next_batch(&s, &b2, 1 << 20, 1 << 20, false), 10);
    wire_buf_free(&b2);
    agent_stream_free(&s);
}

Test(stream, window_limits_unacked_data)
{
    agent_stream_t s;
    wire_buf_t b = {0};
    cr_assert_eq(agent_stream_init(&s, 1, 0), 0);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(agent_stream_write(&s, 0, 0, data, 64 << 10, NULL), 0);
    /* a window of 128 KiB: two writes in flight, then nothing until an ack */
    cr_assert_eq(agent_stream_next_batch(&s, &b, 64 << 10, 128 << 10, false), 1);
    cr_assert_eq(agent_stream_next_batch(&s, &b, 64 << 10, 128 << 10, false), 1);
    cr_assert_eq(agent_stream_next_batch(&s, &b, 64 << 10, 128 << 10, false), 0, "window full");
    cr_assert_eq(s.inflight_data, 128u << 10);
    cr_assert_eq(agent_stream_ack(&s, 1), 1);
    cr_assert_eq(s.inflight_data, 64u << 10);
    cr_assert_eq(agent_stream_next_batch(&s, &b, 1 << 20, 128 << 10, false), 1);
    /* a record larger than the window still goes when nothing is in flight */
    cr_assert_eq(agent_stream_ack(&s, 3), 2);
    cr_assert_eq(agent_stream_next_batch(&s, &b, 1 << 20, 4096, false), 1);
    cr_assert_eq(agent_stream_next_batch(&s, &b, 1 << 20, 4096, false), 0);
    wire_buf_free(&b);
    agent_stream_free(&s);
}

Test(stream, ack_drops_and_checks)
{
    agent_stream_t s;
    wire_buf_t b = {0};
    cr_assert_eq(agent_stream_init(&s, 1, 0), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(agent_stream_write(&s, 0, 0, data, 4096, NULL), 0);
    size_t full = s.held_bytes;
    cr_assert_eq(agent_stream_next_batch(&s, &b, 16384, 1 << 20, false), 4);
    cr_assert_eq(agent_stream_ack(&s, 5), TM_EINVAL, "never sent");
    cr_assert_eq(agent_stream_ack(&s, 3), 3);
    cr_assert_eq(s.count, 7);
    cr_assert_eq(s.held_bytes, full - 3 * agent_stream_cost(4096));
    cr_assert_eq(agent_stream_ack(&s, 2), 0, "an old ack changes nothing");
    cr_assert_eq(agent_stream_acked_count(&s), 3);
    cr_assert_eq(agent_stream_next_batch(&s, &b, 1 << 20, 1 << 20, false), 6);
    cr_assert_eq(agent_stream_ack(&s, 10), 7);
    cr_assert(agent_stream_all_acked(&s));
    cr_assert_eq(s.held_bytes, 0);
    cr_assert_null(s.head);
    wire_buf_free(&b);
    agent_stream_free(&s);
}

Test(stream, resume_resends_exactly_from_next_seq)
{
    agent_stream_t s;
    wire_buf_t b = {0};
    cr_assert_eq(agent_stream_init(&s, 1, 0), 0);
    for (uint32_t i = 0; i < 10; i++)
        cr_assert_eq(agent_stream_write(&s, 0, i * 512ull, data, 512, NULL), 0);
    cr_assert_eq(agent_stream_next_batch(&s, &b, 1 << 20, 1 << 20, false), 10);
    cr_assert_eq(agent_stream_ack(&s, 2), 2);
    /* the connection drops; the server had made 1..6 durable */
    cr_assert_eq(agent_stream_resume(&s, 12), TM_EINVAL, "past what was handed out");
    cr_assert_eq(agent_stream_resume(&s, 2), TM_ENOTFOUND, "below what was acked");
    cr_assert_eq(agent_stream_resume(&s, 7), 0);
    cr_assert_eq(s.count, 4);
    wire_buf_reset(&b);
    cr_assert_eq(agent_stream_next_batch(&s, &b, 1 << 20, 1 << 20, false), 4);
    decode_batch(&b);
    cr_assert_eq(recs.first_seq, 7);
    cr_assert_eq(recs.count, 4);
    cr_assert_eq(recs.entries[0].offset, 6 * 512ull);
    /* resuming at next_seq itself: nothing to resend */
    cr_assert_eq(agent_stream_ack(&s, 10), 4);
    cr_assert_eq(agent_stream_resume(&s, 11), 0);
    cr_assert_not(agent_stream_has_unsent(&s));
    wire_buf_free(&b);
    agent_stream_free(&s);
}

Test(stream, first_resume_takes_the_servers_numbers)
{
    agent_stream_t s;
    wire_buf_t b = {0};
    cr_assert_eq(agent_stream_init(&s, 1, 0), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(agent_stream_write(&s, 0, 0, data, 512, NULL), 0);
    /* a restarted agent: the server already holds 1..499 */
    cr_assert_eq(agent_stream_resume(&s, 500), 0);
    cr_assert_eq(s.next_seq, 503);
    cr_assert_eq(agent_stream_acked_count(&s), 0);
    cr_assert_eq(agent_stream_next_batch(&s, &b, 1 << 20, 1 << 20, false), 3);
    decode_batch(&b);
    cr_assert_eq(recs.first_seq, 500);
    /* once something was sent, numbers are fixed */
    cr_assert_eq(agent_stream_resume(&s, 900), TM_EINVAL);
    cr_assert_eq(agent_stream_ack(&s, 502), 3);
    cr_assert_eq(agent_stream_acked_count(&s), 3);
    wire_buf_free(&b);

    /* a stream that starts at a given resume point */
    agent_stream_t r;
    uint64_t seq;
    cr_assert_eq(agent_stream_init(&r, 42, 0), 0);
    cr_assert_eq(agent_stream_flush(&r, false, &seq), 0);
    cr_assert_eq(seq, 42);
    agent_stream_free(&r);
    agent_stream_free(&s);
}

Test(stream, bounded_size_with_room_signal)
{
    agent_stream_t s;
    wire_buf_t b = {0};
    size_t bound = 10 * agent_stream_cost(4096);
    cr_assert_eq(agent_stream_init(&s, 1, bound), 0);
    cr_assert(agent_stream_has_room(&s, 1 << 20), "an empty stream always takes one record");
    int i = 0;
    while (agent_stream_has_room(&s, 4096)) {
        cr_assert_eq(agent_stream_write(&s, 0, 0, data, 4096, NULL), 0);
        i++;
    }
    cr_assert_eq(i, 10);
    cr_assert_eq(agent_stream_write(&s, 0, 0, data, 4096, NULL), -EAGAIN);
    cr_assert_eq(s.count, 10, "a refused append changes nothing");
    cr_assert_leq(s.held_bytes, bound);
    /* forced records (server-asked tags, flushes) still get in */
    cr_assert_eq(agent_stream_tag(&s, WIRE_TAG_APP, 1, "asked", true, NULL), 0);
    cr_assert_eq(agent_stream_next_batch(&s, &b, 1 << 20, 1 << 20, false), 11);
    cr_assert_eq(agent_stream_ack(&s, 2), 2);
    cr_assert(agent_stream_has_room(&s, 4096), "an ack makes room");
    wire_buf_free(&b);
    agent_stream_free(&s);
}

Test(stream, synced_records_carry_a_disk_and_nothing_else)
{
    agent_stream_t s;
    cr_assert_eq(agent_stream_init(&s, 1, 0), 0);
    uint64_t seq = 0;
    cr_assert_eq(agent_stream_synced(&s, 3, false, &seq), 0);
    cr_assert_eq(seq, 1);
    cr_assert_eq(agent_stream_synced(&s, WIRE_MAX_DISKS, false, NULL), TM_EINVAL);
    /* stray fields are cleared: the server refuses a SYNCED that has any */
    wire_entry_t e = {.kind = WIRE_R_SYNCED, .disk = 1, .offset = 512, .length = 512, .id = 9, .tag_kind = 1};
    cr_assert_eq(agent_stream_append(&s, &e, false, NULL), 0);
    cr_assert_eq(s.held_bytes, 2 * agent_stream_cost(0), "no data held");
    wire_buf_t b = {0};
    cr_assert_eq(agent_stream_next_batch(&s, &b, WIRE_MAX_BATCH_DATA, 1u << 20, false), 2);
    wire_records_t *r = tm_malloc(sizeof *r);
    char reason[160] = "";
    cr_assert_eq(wire_dec_records(b.data + WIRE_HDR_LEN, b.len - WIRE_HDR_LEN, r, NULL, reason, sizeof reason), 0,
                 "%s", reason);
    cr_assert_eq(r->entries[0].kind, WIRE_R_SYNCED);
    cr_assert_eq(r->entries[0].disk, 3);
    cr_assert_eq(r->entries[1].disk, 1);
    cr_assert_eq(r->raw_len, 0);
    tm_free(r);
    wire_buf_free(&b);
    agent_stream_free(&s);
}
