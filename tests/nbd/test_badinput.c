/*
 * Hostile and odd input on the NBD port, from a raw socket: garbage in the
 * handshake, oversize options and requests, requests past the end, unknown
 * commands and flags, bad magic, clients that vanish mid-message. Each case
 * gets its error reply (and the connection goes on) or a closed connection
 * with a log line; after each, qemu-io still reads from the server.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbdt.h"

#define SIZE (1u << 20)
#define SEED 0x5151u

static nbdt_server_t t;
static const char *disk_img;

static void setup(void)
{
    tmt_log_capture();
    nbdt_init(&t, "nbd-bad");
    disk_img = nbdt_image(&t, "disk", SIZE, SEED, false);
    nbdt_image(&t, "ro", SIZE, SEED, true);
    nbdt_start(&t);
}

/* Each test ends with nbdt_stop() itself: assertions in a Criterion .fini
 * are printed but do not fail the test. This one only cleans up after a
 * test that failed before its end. */
static void teardown(void)
{
    nbdt_stop(&t);
}

TestSuite(badinput, .init = setup, .fini = teardown, .timeout = 60);

/* The connection is closed, the reason is logged, and the server serves. */
static void assert_dropped(int fd, const char *reason)
{
    int port = nbdt_local_port(fd);
    cr_assert(nbdt_at_eof(fd), "the connection stayed open after: %s", reason);
    close(fd);
    tmt_assert_log(TM_LOG_WARN, "nbd: 127.0.0.1:%d: %s; closing the connection", port, reason);
    nbdt_assert_serving(&t, "disk");
}

static void expect_opt_reply(int fd, uint32_t opt, uint32_t type, const char *text)
{
    nbdt_opt_reply_t r;
    cr_assert(nbdt_recv_opt_reply(fd, &r), "closed instead of a reply to %s", nbd_proto_opt_name(opt));
    cr_assert_eq(r.opt, opt);
    cr_assert_eq(r.type, type, "reply 0x%x to %s, expected 0x%x (%s)", r.type, nbd_proto_opt_name(opt), type,
                 (char *)r.data);
    if (text != NULL)
        cr_assert_str_eq((char *)r.data, text);
}

Test(badinput, garbage_instead_of_client_flags)
{
    int fd = nbdt_connect(t.port);
    uint8_t g[NBD_GREETING_LEN];
    cr_assert(nbdt_recv(fd, g, sizeof g));
    const uint8_t junk[64] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8};
    nbdt_send(fd, junk, sizeof junk);
    assert_dropped(fd, "unknown client flags 0xdeadbeef");
    nbdt_stop(&t);
}

Test(badinput, http_request_on_the_nbd_port)
{
    int fd = nbdt_connect(t.port);
    const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    nbdt_send(fd, req, sizeof req - 1);
    uint8_t g[NBD_GREETING_LEN];
    cr_assert(nbdt_recv(fd, g, sizeof g));
    assert_dropped(fd, "unknown client flags 0x47455420");
    nbdt_stop(&t);
}

Test(badinput, garbage_instead_of_an_option)
{
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    nbdt_send(fd, "not an option header!", 21);
    assert_dropped(fd, "bad option magic 0x6e6f7420616e206f");
    nbdt_stop(&t);
}

Test(badinput, oversize_option_length)
{
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    int port = nbdt_local_port(fd);
    nbdt_send_opt(fd, NBD_OPT_GO, NULL, 0x10000000u); /* the header alone */
    expect_opt_reply(fd, NBD_OPT_GO, NBD_REP_ERR_TOO_BIG, "option data over 65536 bytes");
    cr_assert(nbdt_at_eof(fd));
    close(fd);
    tmt_assert_log(TM_LOG_WARN,
                   "nbd: 127.0.0.1:%d: NBD_OPT_GO of 268435456 bytes is over the 65536-byte limit; closing the "
                   "connection",
                   port);
    nbdt_assert_serving(&t, "disk");
    nbdt_stop(&t);
}

Test(badinput, option_at_the_limit_is_read_and_refused)
{
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    static uint8_t data[NBD_MAX_OPTION];
    memset(data, 'x', sizeof data);
    nbdt_send_opt(fd, 4242, data, sizeof data);
    expect_opt_reply(fd, 4242, NBD_REP_ERR_UNSUP, "unknown option (4242) is not supported");
    /* The session goes on. */
    uint8_t go[64];
    size_t len = nbdt_go_data(go, "disk", NULL, 0);
    nbdt_send_opt(fd, NBD_OPT_GO, go, (uint32_t)len);
    expect_opt_reply(fd, NBD_OPT_GO, NBD_REP_INFO, NULL);
    close(fd);
    nbdt_stop(&t);
}

Test(badinput, oversize_export_name)
{
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    nbdt_send_opt(fd, NBD_OPT_EXPORT_NAME, NULL, NBD_MAX_OPTION + 1);
    assert_dropped(fd, "NBD_OPT_EXPORT_NAME of 65537 bytes");
    nbdt_stop(&t);
}

Test(badinput, export_name_with_a_nul)
{
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    nbdt_send_opt(fd, NBD_OPT_EXPORT_NAME, "di\0sk", 5);
    assert_dropped(fd, "NBD_OPT_EXPORT_NAME: export name contains a NUL byte");
    nbdt_stop(&t);
}

Test(badinput, every_option_gets_its_reply)
{
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);

    /* Refused options; the session goes on after each. */
    nbdt_send_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    expect_opt_reply(fd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_UNSUP, NULL);
    nbdt_send_opt(fd, NBD_OPT_STARTTLS, NULL, 0);
    expect_opt_reply(fd, NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP, NULL);
    nbdt_send_opt(fd, NBD_OPT_LIST_META_CONTEXT, "abc", 3);
    expect_opt_reply(fd, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_UNSUP, NULL);
    nbdt_send_opt(fd, NBD_OPT_EXTENDED_HEADERS, NULL, 0);
    expect_opt_reply(fd, NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_UNSUP, NULL);
    nbdt_send_opt(fd, 0x7fffffffu, NULL, 0);
    expect_opt_reply(fd, 0x7fffffffu, NBD_REP_ERR_UNSUP, "unknown option (2147483647) is not supported");
    nbdt_send_opt(fd, NBD_OPT_LIST, "x", 1);
    expect_opt_reply(fd, NBD_OPT_LIST, NBD_REP_ERR_INVALID, "NBD_OPT_LIST carries no data");
    uint8_t bad[8] = {0, 0, 0, 9, 'd', 'i', 's', 'k'};
    nbdt_send_opt(fd, NBD_OPT_GO, bad, sizeof bad);
    expect_opt_reply(fd, NBD_OPT_GO, NBD_REP_ERR_INVALID,
                     "NBD_OPT_GO: export name length past the end of the option");

    /* LIST: every export, then ACK. */
    nbdt_send_opt(fd, NBD_OPT_LIST, NULL, 0);
    nbdt_opt_reply_t r;
    const char *names[] = {"disk", "ro"};
    for (int i = 0; i < 2; i++) {
        cr_assert(nbdt_recv_opt_reply(fd, &r));
        cr_assert_eq(r.type, NBD_REP_SERVER);
        uint32_t nlen = tm_get_be32(r.data);
        cr_assert_eq(nlen, strlen(names[i]));
        cr_assert_eq(r.len, 4 + nlen);
        cr_assert(memcmp(r.data + 4, names[i], nlen) == 0);
    }
    expect_opt_reply(fd, NBD_OPT_LIST, NBD_REP_ACK, NULL);

    /* INFO with NBD_INFO_NAME asked: export, block size, name, ACK. */
    uint8_t go[64];
    const uint16_t want[] = {NBD_INFO_NAME, NBD_INFO_DESCRIPTION};
    size_t len = nbdt_go_data(go, "ro", want, 2);
    nbdt_send_opt(fd, NBD_OPT_INFO, go, (uint32_t)len);
    cr_assert(nbdt_recv_opt_reply(fd, &r));
    cr_assert_eq(r.type, NBD_REP_INFO);
    cr_assert_eq(r.len, NBD_INFO_EXPORT_LEN);
    cr_assert_eq(tm_get_be16(r.data), NBD_INFO_EXPORT);
    cr_assert_eq(tm_get_be64(r.data + 2), SIZE);
    cr_assert_eq(tm_get_be16(r.data + 10), NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_CAN_MULTI_CONN);
    cr_assert(nbdt_recv_opt_reply(fd, &r));
    cr_assert_eq(r.type, NBD_REP_INFO);
    cr_assert_eq(r.len, NBD_INFO_BLOCK_SIZE_LEN);
    cr_assert_eq(tm_get_be16(r.data), NBD_INFO_BLOCK_SIZE);
    cr_assert_eq(tm_get_be32(r.data + 2), 1);
    cr_assert_eq(tm_get_be32(r.data + 6), 4096);
    cr_assert_eq(tm_get_be32(r.data + 10), NBD_MAX_REQUEST);
    cr_assert(nbdt_recv_opt_reply(fd, &r));
    cr_assert_eq(r.type, NBD_REP_INFO);
    cr_assert_eq(tm_get_be16(r.data), NBD_INFO_NAME);
    cr_assert_eq(r.len, 2 + 2);
    cr_assert(memcmp(r.data + 2, "ro", 2) == 0);
    expect_opt_reply(fd, NBD_OPT_INFO, NBD_REP_ACK, NULL);

    /* INFO and GO on an unknown export: an error with a message. */
    len = nbdt_go_data(go, "nope", NULL, 0);
    nbdt_send_opt(fd, NBD_OPT_INFO, go, (uint32_t)len);
    expect_opt_reply(fd, NBD_OPT_INFO, NBD_REP_ERR_UNKNOWN, "unknown export 'nope'");
    nbdt_send_opt(fd, NBD_OPT_GO, go, (uint32_t)len);
    expect_opt_reply(fd, NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, "unknown export 'nope'");

    /* And GO still works at the end of all that. */
    len = nbdt_go_data(go, "disk", NULL, 0);
    nbdt_send_opt(fd, NBD_OPT_GO, go, (uint32_t)len);
    expect_opt_reply(fd, NBD_OPT_GO, NBD_REP_INFO, NULL);
    expect_opt_reply(fd, NBD_OPT_GO, NBD_REP_INFO, NULL);
    expect_opt_reply(fd, NBD_OPT_GO, NBD_REP_ACK, NULL);
    uint8_t buf[512], exp[512];
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, 4096, sizeof buf, NULL, buf), 0);
    nbdt_expected(exp, 4096, sizeof exp, SIZE, SEED);
    cr_assert(memcmp(buf, exp, sizeof buf) == 0);
    nbdt_send_req(fd, 0, NBD_CMD_DISC, 0, 0, 0);
    cr_assert(nbdt_at_eof(fd));
    close(fd);
    cr_assert_eq(tmt_log_count_prefix("nbd: 127.0.0.1"), 2, "only the unknown exports are logged:\n%s",
                 tmt_log_text());
    nbdt_stop(&t);
}

Test(badinput, abort_gets_an_ack_then_the_end)
{
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    nbdt_send_opt(fd, NBD_OPT_ABORT, NULL, 0);
    expect_opt_reply(fd, NBD_OPT_ABORT, NBD_REP_ACK, NULL);
    cr_assert(nbdt_at_eof(fd));
    close(fd);
    nbdt_stop(&t);
}

static void export_name_session(uint32_t client_flags, size_t reply_len)
{
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, client_flags);
    nbdt_send_opt(fd, NBD_OPT_EXPORT_NAME, "disk", 4);
    uint8_t r[NBD_EXPORT_NAME_REPLY_LEN + NBD_ZERO_PAD_LEN];
    cr_assert(nbdt_recv(fd, r, reply_len));
    cr_assert_eq(tm_get_be64(r), SIZE);
    cr_assert_eq(tm_get_be16(r + 8) & NBD_FLAG_READ_ONLY, 0);
    cr_assert(tm_get_be16(r + 8) & NBD_FLAG_HAS_FLAGS);
    for (size_t i = NBD_EXPORT_NAME_REPLY_LEN; i < reply_len; i++)
        cr_assert_eq(r[i], 0);
    /* Transmission follows at once, with nothing else in between. */
    uint8_t buf[100], exp[100];
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, 999, sizeof buf, NULL, buf), 0);
    nbdt_expected(exp, 999, sizeof exp, SIZE, SEED);
    cr_assert(memcmp(buf, exp, sizeof buf) == 0);
    nbdt_send_req(fd, 0, NBD_CMD_DISC, 0, 0, 0);
    cr_assert(nbdt_at_eof(fd));
    close(fd);
}

Test(badinput, old_style_export_name)
{
    export_name_session(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES, NBD_EXPORT_NAME_REPLY_LEN);
    export_name_session(NBD_FLAG_C_FIXED_NEWSTYLE, NBD_EXPORT_NAME_REPLY_LEN + NBD_ZERO_PAD_LEN);
    export_name_session(0, NBD_EXPORT_NAME_REPLY_LEN + NBD_ZERO_PAD_LEN); /* plain newstyle */
    nbdt_stop(&t);
}

Test(badinput, old_style_unknown_export_closes)
{
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    int port = nbdt_local_port(fd);
    nbdt_send_opt(fd, NBD_OPT_EXPORT_NAME, "nope", 4);
    cr_assert(nbdt_at_eof(fd));
    close(fd);
    tmt_assert_log(TM_LOG_INFO, "nbd: 127.0.0.1:%d: unknown export 'nope'; closing the connection", port);
    nbdt_assert_serving(&t, "disk");
    nbdt_stop(&t);
}

Test(badinput, requests_past_the_end)
{
    uint64_t size;
    int fd = nbdt_open(t.port, "disk", &size, NULL);
    cr_assert_eq(size, SIZE);
    uint8_t buf[4096];
    memset(buf, 0xee, sizeof buf);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, SIZE - 512, 4096, NULL, buf), NBD_EINVAL);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, SIZE + 4096, 1, NULL, buf), NBD_EINVAL);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, UINT64_MAX - 511, 1024, NULL, buf), NBD_EINVAL);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_TRIM, SIZE - 512, 4096, NULL, NULL), NBD_EINVAL);
    /* Writes past the end are ENOSPC, and their payload is skipped. */
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE, SIZE - 512, sizeof buf, buf, NULL), NBD_ENOSPC);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE_ZEROES, SIZE, 1, NULL, NULL), NBD_ENOSPC);
    /* Still in step: an ordinary read right after. */
    uint8_t exp[4096];
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, SIZE - 4096, 4096, NULL, buf), 0);
    nbdt_expected(exp, SIZE - 4096, 4096, SIZE, SEED);
    cr_assert(memcmp(buf, exp, sizeof buf) == 0, "the refused write changed the export");
    close(fd);
    nbdt_assert_serving(&t, "disk");
    nbdt_stop(&t);
}

Test(badinput, oversize_requests)
{
    int fd = nbdt_open(t.port, "disk", NULL, NULL);
    uint8_t buf[4096];
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, 0, 64u << 20, NULL, buf), NBD_EOVERFLOW);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, 0, UINT32_MAX, NULL, buf), NBD_EOVERFLOW);
    /* A WRITE over the limit: its whole payload is read and dropped (nothing
     * allocated for it), then the error. */
    size_t big = NBD_MAX_REQUEST + 4096;
    uint8_t *payload = malloc(big);
    cr_assert_not_null(payload);
    memset(payload, 0x77, big);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE, 0, (uint32_t)big, payload, NULL), NBD_EOVERFLOW);
    free(payload);
    uint8_t exp[4096];
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, 0, 4096, NULL, buf), 0);
    nbdt_expected(exp, 0, 4096, SIZE, SEED);
    cr_assert(memcmp(buf, exp, sizeof buf) == 0);
    close(fd);
    nbdt_assert_serving(&t, "disk");
    nbdt_stop(&t);
}

Test(badinput, unknown_commands_and_flags)
{
    int fd = nbdt_open(t.port, "disk", NULL, NULL);
    uint8_t buf[512];
    memset(buf, 0x33, sizeof buf);
    cr_assert_eq(nbdt_roundtrip(fd, 0, 99, 0, 512, NULL, NULL), NBD_EINVAL);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_CACHE, 0, 512, NULL, NULL), NBD_EINVAL);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_BLOCK_STATUS, 0, 512, NULL, NULL), NBD_EINVAL);
    cr_assert_eq(nbdt_roundtrip(fd, NBD_CMD_FLAG_DF, NBD_CMD_READ, 0, 512, NULL, buf), NBD_EINVAL);
    cr_assert_eq(nbdt_roundtrip(fd, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_WRITE_ZEROES, 0, 512, NULL, NULL), NBD_EINVAL);
    cr_assert_eq(nbdt_roundtrip(fd, 0x4000, NBD_CMD_TRIM, 0, 512, NULL, NULL), NBD_EINVAL);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_FLUSH, 0, 512, NULL, NULL), NBD_EINVAL);
    /* A WRITE with a flag it may not carry: refused, payload skipped. */
    cr_assert_eq(nbdt_roundtrip(fd, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_WRITE, 0, sizeof buf, buf, NULL), NBD_EINVAL);
    uint8_t exp[512];
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, 0, sizeof buf, NULL, buf), 0);
    nbdt_expected(exp, 0, sizeof exp, SIZE, SEED);
    cr_assert(memcmp(buf, exp, sizeof buf) == 0);
    close(fd);
    nbdt_assert_serving(&t, "disk");
    nbdt_stop(&t);
}

Test(badinput, bad_request_magic)
{
    int fd = nbdt_open(t.port, "disk", NULL, NULL);
    uint8_t junk[NBD_REQ_HDR_LEN];
    memset(junk, 0xa5, sizeof junk);
    nbdt_send(fd, junk, sizeof junk);
    assert_dropped(fd, "bad request magic 0xa5a5a5a5");
    nbdt_stop(&t);
}

Test(badinput, clients_that_vanish_mid_message)
{
    /* Half a greeting reply, half an option, half a request, half a write's
     * payload: the server notices each end and carries on. */
    int fd = nbdt_connect(t.port);
    uint8_t g[NBD_GREETING_LEN];
    cr_assert(nbdt_recv(fd, g, sizeof g));
    nbdt_send(fd, "\0\0", 2);
    close(fd);

    fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE);
    nbdt_send(fd, "IHAVEOPT\0\0\0\7\0\0\0\x20" "abc", 19);
    close(fd);

    fd = nbdt_open(t.port, "disk", NULL, NULL);
    nbdt_send(fd, "\x25\x60\x95\x13\0\0", 6);
    close(fd);

    fd = nbdt_open(t.port, "disk", NULL, NULL);
    nbdt_send_req(fd, 0, NBD_CMD_WRITE, 1, 0, 65536);
    nbdt_send(fd, g, sizeof g);
    close(fd);

    /* A client that sends requests and closes its side without DISC still
     * gets its replies. */
    fd = nbdt_open(t.port, "disk", NULL, NULL);
    nbdt_send_req(fd, 0, NBD_CMD_READ, 7, 0, 512);
    shutdown(fd, SHUT_WR);
    uint32_t err;
    uint64_t handle;
    uint8_t buf[512];
    cr_assert(nbdt_recv_reply(fd, &err, &handle));
    cr_assert_eq(err, 0);
    cr_assert_eq(handle, 7);
    cr_assert(nbdt_recv(fd, buf, sizeof buf));
    cr_assert(nbdt_at_eof(fd));
    close(fd);

    nbdt_assert_serving(&t, "disk");
    cr_assert_eq(tmt_log_count_prefix("nbd: 127.0.0.1"), 0, "a vanished client is not a warning:\n%s",
                 tmt_log_text());
    nbdt_stop(&t);
}

Test(badinput, disc_answers_what_is_in_flight)
{
    int fd = nbdt_open(t.port, "disk", NULL, NULL);
    enum { READS = 16, WRITES = 8, LEN = 16384 };
    static uint8_t wdata[LEN];
    memset(wdata, 0x6b, sizeof wdata);
    for (int i = 0; i < READS; i++)
        nbdt_send_req(fd, 0, NBD_CMD_READ, (uint64_t)i, (uint64_t)i * LEN, LEN);
    for (int i = 0; i < WRITES; i++) {
        nbdt_send_req(fd, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 100 + (uint64_t)i, 512u << 10 | (uint64_t)i * LEN, LEN);
        nbdt_send(fd, wdata, sizeof wdata);
    }
    nbdt_send_req(fd, 0, NBD_CMD_DISC, 999, 0, 0);

    bool seen[READS + WRITES] = {false};
    static uint8_t buf[LEN], exp[LEN];
    for (int k = 0; k < READS + WRITES; k++) {
        uint32_t err;
        uint64_t h;
        cr_assert(nbdt_recv_reply(fd, &err, &h), "closed after %d replies of %d", k, READS + WRITES);
        cr_assert_eq(err, 0);
        int idx = h < 100 ? (int)h : READS + (int)(h - 100);
        cr_assert(idx >= 0 && idx < READS + WRITES && !seen[idx], "handle %llu", (unsigned long long)h);
        seen[idx] = true;
        if (h < 100) {
            cr_assert(nbdt_recv(fd, buf, LEN));
            nbdt_expected(exp, h * LEN, LEN, SIZE, SEED);
            cr_assert(memcmp(buf, exp, LEN) == 0, "read %llu", (unsigned long long)h);
        }
    }
    cr_assert(nbdt_at_eof(fd));
    close(fd);
    cr_assert(nbdt_file_all(disk_img, 512u << 10, WRITES * LEN, 0x6b));
    nbdt_stop(&t);
}

Test(badinput, pipelined_past_every_bound)
{
    /* More requests than one wakeup decodes and than a connection keeps in
     * flight, all sent before any reply is read. */
    int fd = nbdt_open(t.port, "disk", NULL, NULL);
    enum { N = 300, LEN = 256 };
    static uint8_t data[N][LEN];
    for (int i = 0; i < N; i++) {
        memset(data[i], i & 0xff, LEN);
        nbdt_send_req(fd, 0, NBD_CMD_WRITE, (uint64_t)i, (uint64_t)i * LEN, LEN);
        nbdt_send(fd, data[i], LEN);
    }
    bool seen[N] = {false};
    for (int k = 0; k < N; k++) {
        uint32_t err;
        uint64_t h;
        cr_assert(nbdt_recv_reply(fd, &err, &h));
        cr_assert_eq(err, 0);
        cr_assert(h < N && !seen[h]);
        seen[h] = true;
    }
    for (int i = 0; i < N; i++)
        nbdt_send_req(fd, 0, NBD_CMD_READ, (uint64_t)i, (uint64_t)i * LEN, LEN);
    memset(seen, 0, sizeof seen);
    for (int k = 0; k < N; k++) {
        uint32_t err;
        uint64_t h;
        uint8_t buf[LEN];
        cr_assert(nbdt_recv_reply(fd, &err, &h));
        cr_assert_eq(err, 0);
        cr_assert(h < N && !seen[h]);
        seen[h] = true;
        cr_assert(nbdt_recv(fd, buf, LEN));
        cr_assert(memcmp(buf, data[h], LEN) == 0, "read %llu", (unsigned long long)h);
    }
    close(fd);
    nbdt_stop(&t);
}
