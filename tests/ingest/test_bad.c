/*
 * One test per bad input: the agent that sent it gets an ERROR with the
 * protocol's code and a reason and its connection is closed; nothing of the
 * bad frame reaches the journal; a well-behaved agent on another connection
 * keeps getting its acks throughout.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/socket.h>
#include <xxhash.h>

#include "base/endian.h"
#include "tests/ingest/ita.h"

TestSuite(bad, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

#define DISK_SIZE (16ull << 20)

static const wire_disk_t disks[1] = {{"disk0", DISK_SIZE}};

typedef struct bad_ctx {
    ita_server_t s;
    ita_agent_t bad;
    uint8_t secret[32];
    unsigned bad_batches; /* batches of machine "bad" that may be in the journal */
} bad_ctx_t;

typedef void (*bad_fn)(bad_ctx_t *x);

/* Append a frame with this header and body, its checksum computed here. */
static void frame_raw(wire_buf_t *b, uint16_t type, uint32_t body_len, const void *body, size_t len)
{
    uint8_t hdr[WIRE_HDR_LEN];
    tm_put16(hdr, type);
    tm_put16(hdr + 2, 0);
    tm_put32(hdr + 4, body_len);
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, hdr, 8);
    XXH3_64bits_update(st, body, len);
    tm_put64(hdr + 8, XXH3_64bits_digest(st));
    XXH3_freeState(st);
    wire_put_bytes(b, hdr, sizeof hdr);
    wire_put_bytes(b, body, len);
}

/* Recompute the checksum of the one frame in b after its body was edited. */
static void reseal(wire_buf_t *b)
{
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, b->data, 8);
    XXH3_64bits_update(st, b->data + WIRE_HDR_LEN, b->len - WIRE_HDR_LEN);
    tm_put64(b->data + 8, XXH3_64bits_digest(st));
    XXH3_freeState(st);
}

static void run_bad(int code, bad_fn fn, unsigned bad_batches)
{
    bad_ctx_t x = {.bad_batches = bad_batches};
    ita_agent_t good;
    uint8_t gsecret[32];
    wire_buf_t b = {0};
    const char *data = tc_path("data");

    ita_add_machine(data, "good", gsecret);
    ita_add_machine(data, "bad", x.secret);
    ita_start(&x.s, data, NULL);
    ita_connect(&good, x.s.port);
    cr_assert_eq(ita_handshake(&good, "good", gsecret, disks, 1, NULL), 1);
    ita_batch(&b, 1, 5, DISK_SIZE, 1, true);
    ita_send(&good, &b);
    ita_wait_ack(&good, 5);

    ita_connect(&x.bad, x.s.port);
    fn(&x);
    ita_expect_error(&x.bad, code);
    ita_close(&x.bad);

    ita_batch(&b, 6, 3, DISK_SIZE, 2, false);
    ita_send(&good, &b);
    cr_assert_eq(ita_wait_ack(&good, 8), 8);
    ita_close(&good);
    ita_stop(&x.s);
    cr_assert(strstr(x.s.c.err, wire_err_name(code)), "no log line naming %s; stderr:\n%s", wire_err_name(code),
              x.s.c.err);
    tc_child_free(&x.s.c);

    ita_journal_t j;
    ita_read_journal(data, &j);
    cr_assert_eq(ita_count_batches(&j, "good"), 2);
    cr_assert_eq(ita_count_batches(&j, "bad"), x.bad_batches);
    ita_journal_free(&j);
    wire_buf_free(&b);
}

static void bad_handshake(bad_ctx_t *x)
{
    cr_assert_eq(ita_handshake(&x->bad, "bad", x->secret, disks, 1, NULL), 1);
}

static void do_truncated(bad_ctx_t *x)
{
    wire_buf_t b = {0};
    bad_handshake(x);
    ita_batch(&b, 1, 20, DISK_SIZE, 3, false);
    ita_send_raw(&x->bad, b.data, b.len / 2);
    shutdown(x->bad.fd, SHUT_WR);
    wire_buf_free(&b);
}
Test(bad, truncated_frame_then_eof) { run_bad(WIRE_E_PROTOCOL, do_truncated, 0); }

static void do_bad_checksum(bad_ctx_t *x)
{
    wire_buf_t b = {0};
    bad_handshake(x);
    ita_batch(&b, 1, 20, DISK_SIZE, 3, true);
    b.data[b.len - 1] ^= 0x40;
    ita_send(&x->bad, &b);
    wire_buf_free(&b);
}
Test(bad, bad_frame_checksum) { run_bad(WIRE_E_CHECKSUM, do_bad_checksum, 0); }

static void do_bad_write_hash(bad_ctx_t *x)
{
    wire_buf_t b = {0};
    bad_handshake(x);
    /* uncompressed, so the last data byte belongs to a write or a tag; one
     * write only, to be sure */
    wire_entry_t e = {.kind = WIRE_R_WRITE, .length = 4096, .offset = 8192};
    static uint8_t buf[4096];
    memset(buf, 0x5a, sizeof buf);
    e.data = buf;
    cr_assert_eq(wire_enc_records(&b, 1, &e, 1, false), 0);
    b.data[b.len - 1] ^= 1;
    reseal(&b);
    ita_send(&x->bad, &b);
    wire_buf_free(&b);
}
Test(bad, write_data_checksum) { run_bad(WIRE_E_CHECKSUM, do_bad_write_hash, 0); }

static void do_absurd_length(bad_ctx_t *x)
{
    uint8_t hdr[WIRE_HDR_LEN] = {0};
    bad_handshake(x);
    tm_put16(hdr, WIRE_T_RECORDS);
    tm_put32(hdr + 4, 0xfffffff0u);
    ita_send_raw(&x->bad, hdr, sizeof hdr);
}
Test(bad, absurd_length) { run_bad(WIRE_E_TOO_BIG, do_absurd_length, 0); }

static void do_unknown_type(bad_ctx_t *x)
{
    wire_buf_t b = {0};
    frame_raw(&b, 0x7e, 4, "abcd", 4);
    ita_send(&x->bad, &b);
    wire_buf_free(&b);
}
Test(bad, unknown_type) { run_bad(WIRE_E_UNKNOWN_TYPE, do_unknown_type, 0); }

static void do_past_end(bad_ctx_t *x)
{
    wire_buf_t b = {0};
    static uint8_t buf[1024];
    bad_handshake(x);
    wire_entry_t e[2] = {
        {.kind = WIRE_R_WRITE, .length = 512, .offset = 0, .data = buf},
        {.kind = WIRE_R_WRITE, .length = 1024, .offset = DISK_SIZE - 512, .data = buf},
    };
    cr_assert_eq(wire_enc_records(&b, 1, e, 2, false), 0);
    ita_send(&x->bad, &b);
    wire_buf_free(&b);
}
Test(bad, write_past_disk_end) { run_bad(WIRE_E_RANGE, do_past_end, 0); }

static void do_bad_disk_index(bad_ctx_t *x)
{
    wire_buf_t b = {0};
    bad_handshake(x);
    wire_entry_t e = {.kind = WIRE_R_ZERO, .disk = 1, .length = 512, .offset = 0};
    cr_assert_eq(wire_enc_records(&b, 1, &e, 1, false), 0);
    ita_send(&x->bad, &b);
    wire_buf_free(&b);
}
Test(bad, disk_index_out_of_range) { run_bad(WIRE_E_RANGE, do_bad_disk_index, 0); }

/* SYNCED names a disk too: one the machine does not have is refused. */
static void do_synced_missing_disk(bad_ctx_t *x)
{
    wire_buf_t b = {0};
    bad_handshake(x);
    wire_entry_t e = {.kind = WIRE_R_SYNCED, .disk = 1};
    cr_assert_eq(wire_enc_records(&b, 1, &e, 1, false), 0);
    ita_send(&x->bad, &b);
    wire_buf_free(&b);
}
Test(bad, synced_for_a_missing_disk) { run_bad(WIRE_E_RANGE, do_synced_missing_disk, 0); }

static void send_auth(ita_agent_t *a, const uint8_t mac[WIRE_MAC_LEN])
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_auth(&b, mac), 0);
    ita_send(a, &b);
    wire_buf_free(&b);
}

static void do_wrong_secret(bad_ctx_t *x)
{
    uint8_t nonce[WIRE_NONCE_LEN], mac[WIRE_MAC_LEN];
    ita_hello(&x->bad, "bad", disks, 1, nonce);
    x->secret[0] ^= 1;
    ita_mac(x->secret, nonce, "bad", mac);
    send_auth(&x->bad, mac);
}
Test(bad, wrong_secret) { run_bad(WIRE_E_AUTH, do_wrong_secret, 0); }

static void do_unknown_machine(bad_ctx_t *x)
{
    uint8_t nonce[WIRE_NONCE_LEN], mac[WIRE_MAC_LEN];
    ita_hello(&x->bad, "ghost", disks, 1, nonce);
    ita_mac(x->secret, nonce, "ghost", mac);
    send_auth(&x->bad, mac);
}
Test(bad, unknown_machine_looks_like_wrong_secret) { run_bad(WIRE_E_AUTH, do_unknown_machine, 0); }

static void do_replayed_mac(bad_ctx_t *x)
{
    /* A MAC over another nonce (an old session's) does not open a new one. */
    uint8_t nonce[WIRE_NONCE_LEN], mac[WIRE_MAC_LEN];
    ita_hello(&x->bad, "bad", disks, 1, nonce);
    nonce[5] ^= 0xff;
    ita_mac(x->secret, nonce, "bad", mac);
    send_auth(&x->bad, mac);
}
Test(bad, mac_over_another_nonce) { run_bad(WIRE_E_AUTH, do_replayed_mac, 0); }

static void do_gap(bad_ctx_t *x)
{
    wire_buf_t b = {0};
    bad_handshake(x);
    ita_batch(&b, 2, 4, DISK_SIZE, 5, true);
    ita_send(&x->bad, &b);
    wire_buf_free(&b);
}
Test(bad, sequence_gap) { run_bad(WIRE_E_SEQUENCE, do_gap, 0); }

static void do_repeat(bad_ctx_t *x)
{
    wire_buf_t b = {0};
    bad_handshake(x);
    ita_batch(&b, 1, 4, DISK_SIZE, 5, true);
    ita_send(&x->bad, &b);
    ita_wait_ack(&x->bad, 4);
    ita_batch(&b, 3, 4, DISK_SIZE, 6, true);
    ita_send(&x->bad, &b);
    wire_buf_free(&b);
}
Test(bad, sequence_repeat) { run_bad(WIRE_E_SEQUENCE, do_repeat, 1); }

static void do_records_before_hello(bad_ctx_t *x)
{
    wire_buf_t b = {0};
    ita_batch(&b, 1, 4, DISK_SIZE, 5, true);
    ita_send(&x->bad, &b);
    wire_buf_free(&b);
}
Test(bad, records_before_hello) { run_bad(WIRE_E_PROTOCOL, do_records_before_hello, 0); }

static void do_auth_before_hello(bad_ctx_t *x)
{
    uint8_t mac[WIRE_MAC_LEN] = {0};
    send_auth(&x->bad, mac);
}
Test(bad, auth_before_hello) { run_bad(WIRE_E_PROTOCOL, do_auth_before_hello, 0); }

static void do_records_before_auth(bad_ctx_t *x)
{
    uint8_t nonce[WIRE_NONCE_LEN];
    wire_buf_t b = {0};
    ita_hello(&x->bad, "bad", disks, 1, nonce);
    ita_batch(&b, 1, 4, DISK_SIZE, 5, true);
    ita_send(&x->bad, &b);
    wire_buf_free(&b);
}
Test(bad, records_before_auth) { run_bad(WIRE_E_PROTOCOL, do_records_before_auth, 0); }

static void do_hello_while_streaming(bad_ctx_t *x)
{
    uint8_t nonce[WIRE_NONCE_LEN];
    bad_handshake(x);
    wire_hello_t h;
    memset(&h, 0, sizeof h);
    h.version = WIRE_VERSION;
    h.ndisks = 1;
    snprintf(h.machine, sizeof h.machine, "bad");
    h.disks[0] = disks[0];
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_hello(&b, &h), 0);
    ita_send(&x->bad, &b);
    wire_buf_free(&b);
    (void)nonce;
}
Test(bad, hello_while_streaming) { run_bad(WIRE_E_PROTOCOL, do_hello_while_streaming, 0); }

static void do_server_frame(bad_ctx_t *x)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_ack(&b, 1), 0);
    ita_send(&x->bad, &b);
    wire_buf_free(&b);
}
Test(bad, server_frame_from_agent) { run_bad(WIRE_E_PROTOCOL, do_server_frame, 0); }

static void do_bad_version(bad_ctx_t *x)
{
    wire_hello_t h;
    memset(&h, 0, sizeof h);
    h.version = WIRE_VERSION + 1;
    h.ndisks = 1;
    snprintf(h.machine, sizeof h.machine, "bad");
    h.disks[0] = disks[0];
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_hello(&b, &h), 0);
    ita_send(&x->bad, &b);
    wire_buf_free(&b);
}
Test(bad, protocol_version) { run_bad(WIRE_E_VERSION, do_bad_version, 0); }

static void do_disks_differ(bad_ctx_t *x)
{
    bad_handshake(x);
    /* Let the first session end first (the server's FIN after our
     * shutdown; it has nothing else to send), so the refusal below is about
     * the disks alone. */
    shutdown(x->bad.fd, SHUT_WR);
    cr_assert(!ita_recv(&x->bad), "frame type 0x%x after shutdown", x->bad.type);
    ita_close(&x->bad);
    ita_connect(&x->bad, x->s.port);
    wire_disk_t other = {"disk0", DISK_SIZE * 2};
    uint8_t nonce[WIRE_NONCE_LEN], mac[WIRE_MAC_LEN];
    ita_hello(&x->bad, "bad", &other, 1, nonce);
    ita_mac(x->secret, nonce, "bad", mac);
    send_auth(&x->bad, mac);
}
Test(bad, disks_differ_from_registration) { run_bad(WIRE_E_DISKS, do_disks_differ, 0); }

static void do_second_connection(bad_ctx_t *x)
{
    ita_agent_t first;
    wire_buf_t b = {0};
    ita_connect(&first, x->s.port);
    cr_assert_eq(ita_handshake(&first, "bad", x->secret, disks, 1, NULL), 1);
    /* the new one replaces the first, which is told `busy` and closed */
    cr_assert_eq(ita_handshake(&x->bad, "bad", x->secret, disks, 1, NULL), 1);
    ita_expect_error(&first, WIRE_E_BUSY);
    ita_close(&first);
    ita_batch(&b, 1, 3, DISK_SIZE, 9, true);
    ita_send(&x->bad, &b);
    cr_assert_eq(ita_wait_ack(&x->bad, 3), 3);
    wire_buf_free(&b);
    /* run_bad's own expectation: a third connection that sends junk */
    ita_close(&x->bad);
    ita_connect(&x->bad, x->s.port);
    do_unknown_type(x);
}
Test(bad, second_connection_replaces_the_first)
{
    /* do_second_connection checks BUSY itself, then leaves run_bad an unknown type. */
    run_bad(WIRE_E_UNKNOWN_TYPE, do_second_connection, 1);
}
