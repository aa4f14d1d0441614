#include "tests/ingest/ita.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "ingest/record.h"
#include "ingest/registry.h"
#include "journal/journal.h"

/* ---- the server ---- */

void ita_start(ita_server_t *s, const char *data, const char *const *extra)
{
    const char *args[24] = {"serve", "--data", data, "--agents", "127.0.0.1:0", "--api", "127.0.0.1:0",
                            "--nbd", "127.0.0.1:0"};
    unsigned n = 9;
    for (; extra && *extra; extra++) {
        cr_assert_lt(n, 22);
        args[n++] = *extra;
    }
    args[n] = NULL;
    snprintf(s->data, sizeof s->data, "%s", data);
    tc_spawn(&s->c, NULL, args);
    bool up = tc_read_until(&s->c, "tidemark: serving");
    cr_assert(up, "serve did not come up; stdout:\n%s\nstderr:\n%s", s->c.out, s->c.err);
    const char *p = strstr(s->c.out, "tidemark: agents on 127.0.0.1:");
    cr_assert_not_null(p, "no agents line; stdout:\n%s", s->c.out);
    s->port = (unsigned)strtoul(p + strlen("tidemark: agents on 127.0.0.1:"), NULL, 10);
    cr_assert(s->port > 0 && s->port < 65536);
    p = strstr(s->c.out, "tidemark: api on 127.0.0.1:");
    cr_assert_not_null(p, "no api line; stdout:\n%s", s->c.out);
    s->api_port = (unsigned)strtoul(p + strlen("tidemark: api on 127.0.0.1:"), NULL, 10);
}

void ita_stop(ita_server_t *s)
{
    cr_assert_eq(kill(s->c.pid, SIGTERM), 0);
    int code = tc_finish(&s->c);
    cr_assert_eq(code, 0, "serve exited %d; stdout:\n%s\nstderr:\n%s", code, s->c.out, s->c.err);
    cr_assert(strstr(s->c.out, "tidemark: stopped (journal closed)"), "stdout:\n%s", s->c.out);
}

void ita_kill(ita_server_t *s)
{
    cr_assert_eq(kill(s->c.pid, SIGKILL), 0);
    int code = tc_finish(&s->c);
    cr_assert_eq(code, 128 + SIGKILL, "serve exited %d; stderr:\n%s", code, s->c.err);
}

void ita_add_machine(const char *data, const char *name, uint8_t secret[32])
{
    tc_child_t c;
    int code = tc_run(&c, (const char *[]){"machine", "add", name, "--data", data, NULL});
    cr_assert_eq(code, 0, "machine add %s: exit %d; stderr:\n%s", name, code, c.err);
    cr_assert_eq(strlen(c.out), 65, "stdout: %s", c.out);
    c.out[64] = '\0';
    cr_assert_eq(ingest_hex_decode(c.out, secret, 32), 0);
    tc_child_free(&c);
}

/* ---- the agent ---- */

void ita_connect(ita_agent_t *a, unsigned port)
{
    memset(a, 0, sizeof *a);
    wire_decoder_init(&a->dec);
    a->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(a->fd, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(a->fd, (struct sockaddr *)&sin, sizeof sin), 0, "connect: %s", strerror(errno));
    int one = 1;
    setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void ita_close(ita_agent_t *a)
{
    if (a->fd >= 0)
        close(a->fd);
    a->fd = -1;
    wire_decoder_free(&a->dec);
}

int ita_send_raw(ita_agent_t *a, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        struct pollfd pf = {.fd = a->fd, .events = POLLOUT};
        int r = poll(&pf, 1, ITA_WAIT_MS);
        cr_assert_gt(r, 0, "the server does not take bytes (poll: %d)", r);
        ssize_t w = send(a->fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

void ita_send(ita_agent_t *a, const wire_buf_t *b)
{
    cr_assert(!b->oom);
    int rc = ita_send_raw(a, b->data, b->len);
    cr_assert_eq(rc, 0, "send: %s", strerror(rc));
}

bool ita_recv(ita_agent_t *a)
{
    for (;;) {
        if (a->in_off < a->in_len) {
            size_t used = 0;
            wire_status_t st = wire_decode(&a->dec, a->in + a->in_off, a->in_len - a->in_off, &used);
            a->in_off += used;
            cr_assert_neq(st, WIRE_BAD, "the server sent a bad frame: %s", a->dec.reason);
            if (st == WIRE_FRAME) {
                a->type = a->dec.hdr.type;
                a->body = a->dec.body;
                a->body_len = a->dec.hdr.body_len;
                return true;
            }
            continue;
        }
        if (a->eof)
            return false;
        struct pollfd pf = {.fd = a->fd, .events = POLLIN};
        int r = poll(&pf, 1, ITA_WAIT_MS);
        cr_assert_gt(r, 0, "nothing from the server within %d ms", ITA_WAIT_MS);
        ssize_t n = recv(a->fd, a->in, sizeof a->in, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* A reset after everything was read counts as the close. */
            cr_assert(n == 0 || errno == ECONNRESET, "recv: %s", strerror(errno));
            a->eof = true;
            cr_assert(!a->dec.in_body && a->dec.hdr_have == 0, "the server's stream ended inside a frame");
            return false;
        }
        a->in_off = 0;
        a->in_len = (size_t)n;
    }
}

static void ita_expect_type(ita_agent_t *a, uint16_t type)
{
    cr_assert(ita_recv(a), "the server closed the connection, expected frame type 0x%x", type);
    if (a->type == WIRE_T_ERROR && type != WIRE_T_ERROR) {
        wire_error_t e;
        char r[128];
        wire_dec_error(a->body, a->body_len, &e, r, sizeof r);
        cr_assert_fail("expected frame type 0x%x, got ERROR %s: %s", type, wire_err_name(e.code), e.text);
    }
    cr_assert_eq(a->type, type, "expected frame type 0x%x, got 0x%x", type, a->type);
}

void ita_hello(ita_agent_t *a, const char *machine, const wire_disk_t *disks, uint16_t ndisks,
               uint8_t nonce[WIRE_NONCE_LEN])
{
    wire_hello_t h;
    memset(&h, 0, sizeof h);
    h.version = WIRE_VERSION;
    h.ndisks = ndisks;
    snprintf(h.machine, sizeof h.machine, "%s", machine);
    snprintf(h.agent_version, sizeof h.agent_version, "ita 1");
    memcpy(h.disks, disks, ndisks * sizeof disks[0]);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_hello(&b, &h), 0);
    ita_send(a, &b);
    wire_buf_free(&b);
    ita_expect_type(a, WIRE_T_CHALLENGE);
    wire_challenge_t ch;
    char r[128];
    cr_assert_eq(wire_dec_challenge(a->body, a->body_len, &ch, r, sizeof r), 0, "%s", r);
    memcpy(nonce, ch.nonce, WIRE_NONCE_LEN);
}

void ita_mac(const uint8_t secret[32], const uint8_t nonce[WIRE_NONCE_LEN], const char *machine,
             uint8_t mac[WIRE_MAC_LEN])
{
    uint8_t msg[16 + WIRE_NONCE_LEN + WIRE_MAX_NAME];
    size_t n = strlen(machine);
    memcpy(msg, "tidemark-auth-v1", 16);
    memcpy(msg + 16, nonce, WIRE_NONCE_LEN);
    memcpy(msg + 16 + WIRE_NONCE_LEN, machine, n);
    unsigned len = WIRE_MAC_LEN;
    cr_assert_not_null(HMAC(EVP_sha256(), secret, 32, msg, 16 + WIRE_NONCE_LEN + n, mac, &len));
}

uint64_t ita_handshake(ita_agent_t *a, const char *machine, const uint8_t secret[32], const wire_disk_t *disks,
                       uint16_t ndisks, wire_welcome_t *w)
{
    uint8_t nonce[WIRE_NONCE_LEN], mac[WIRE_MAC_LEN];
    wire_welcome_t local;
    if (!w)
        w = &local;
    ita_hello(a, machine, disks, ndisks, nonce);
    ita_mac(secret, nonce, machine, mac);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_auth(&b, mac), 0);
    ita_send(a, &b);
    wire_buf_free(&b);
    ita_expect_type(a, WIRE_T_WELCOME);
    char r[128];
    cr_assert_eq(wire_dec_welcome(a->body, a->body_len, w, r, sizeof r), 0, "%s", r);
    return w->next_seq;
}

uint64_t ita_reconnect(ita_agent_t *a, unsigned port, const char *machine, const uint8_t secret[32],
                       const wire_disk_t *disks, uint16_t ndisks, wire_welcome_t *w)
{
    for (unsigned attempt = 0; attempt < 1000; attempt++) {
        uint8_t nonce[WIRE_NONCE_LEN], mac[WIRE_MAC_LEN];
        wire_welcome_t local;
        char r[128];
        if (!w)
            w = &local;
        ita_connect(a, port);
        ita_hello(a, machine, disks, ndisks, nonce);
        ita_mac(secret, nonce, machine, mac);
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_auth(&b, mac), 0);
        ita_send(a, &b);
        wire_buf_free(&b);
        cr_assert(ita_recv(a), "closed without WELCOME or ERROR");
        if (a->type == WIRE_T_WELCOME) {
            cr_assert_eq(wire_dec_welcome(a->body, a->body_len, w, r, sizeof r), 0, "%s", r);
            return w->next_seq;
        }
        wire_error_t e;
        cr_assert_eq(a->type, WIRE_T_ERROR, "frame type 0x%x", a->type);
        cr_assert_eq(wire_dec_error(a->body, a->body_len, &e, r, sizeof r), 0, "%s", r);
        cr_assert_eq(e.code, WIRE_E_BUSY, "ERROR %s: %s", wire_err_name(e.code), e.text);
        ita_close(a);
    }
    cr_assert_fail("still busy after 1000 attempts");
    return 0;
}

void ita_expect_error(ita_agent_t *a, int code)
{
    for (;;) {
        cr_assert(ita_recv(a), "the server closed without an ERROR (expected %s)", wire_err_name(code));
        if (a->type == WIRE_T_ACK)
            continue;
        cr_assert_eq(a->type, WIRE_T_ERROR, "frame type 0x%x, expected ERROR", a->type);
        break;
    }
    wire_error_t e;
    char r[128];
    cr_assert_eq(wire_dec_error(a->body, a->body_len, &e, r, sizeof r), 0, "%s", r);
    cr_assert_eq(e.code, code, "ERROR %s (%s), expected %s", wire_err_name(e.code), e.text, wire_err_name(code));
    cr_assert(e.text[0], "ERROR without a reason");
    cr_assert(!ita_recv(a), "the server sent more after ERROR (type 0x%x)", a->type);
}

uint64_t ita_wait_ack(ita_agent_t *a, uint64_t seq)
{
    for (;;) {
        ita_expect_type(a, WIRE_T_ACK);
        uint64_t v;
        char r[128];
        cr_assert_eq(wire_dec_ack(a->body, a->body_len, &v, r, sizeof r), 0, "%s", r);
        if (v >= seq)
            return v;
    }
}

void ita_batch(wire_buf_t *b, uint64_t first_seq, uint16_t count, uint64_t disk_size, uint64_t seed, bool compress)
{
    static uint8_t data[WIRE_MAX_BATCH_DATA];
    wire_entry_t *e = tm_calloc(count, sizeof *e);
    cr_assert_not_null(e);
    size_t used = 0;
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + first_seq;
    for (unsigned i = 0; i < count; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        unsigned pick = (unsigned)(x >> 60);
        uint32_t len = 512u * (1 + (uint32_t)((x >> 20) % 16));
        uint64_t off = ((x >> 8) % (disk_size / 512 - 16)) * 512;
        if (pick < 11 && used + len <= sizeof data) {
            e[i].kind = WIRE_R_WRITE;
            for (uint32_t k = 0; k < len; k++)
                data[used + k] = compress ? (uint8_t)((k / 64) + i) : (uint8_t)(x >> (k % 56));
            e[i].data = data + used;
            used += len;
        } else if (pick < 13) {
            e[i].kind = WIRE_R_ZERO;
        } else if (pick < 14) {
            e[i].kind = WIRE_R_TRIM;
        } else if (pick < 15) {
            e[i].kind = WIRE_R_FLUSH;
            len = 0;
            off = 0;
        } else {
            static char name[32];
            e[i].kind = WIRE_R_TAG;
            e[i].tag_kind = WIRE_TAG_CRASH;
            e[i].id = first_seq + i;
            int n = snprintf(name, sizeof name, "tag-%u", i);
            memcpy(data + used, name, (size_t)n);
            e[i].data = data + used;
            used += (size_t)n;
            len = (uint32_t)n;
            off = 0;
        }
        e[i].length = len;
        e[i].offset = off;
    }
    wire_buf_reset(b);
    cr_assert_eq(wire_enc_records(b, first_seq, e, count, compress), 0);
    tm_free(e);
}

/* ---- the journal ---- */

void ita_read_journal(const char *data, ita_journal_t *j)
{
    char dir[PATH_MAX];
    jnl_t *jl = NULL;
    jnl_reader_t *r = NULL;
    jnl_record_t rec;
    memset(j, 0, sizeof *j);
    snprintf(dir, sizeof dir, "%s/journal", data);
    tm_log_set_level(TM_LOG_WARN);
    jnl_options_t o = {.read_only = true};
    int rc = jnl_open(dir, &o, &jl);
    cr_assert_eq(rc, 0, "jnl_open %s: %s", dir, tm_strerror(rc));
    cr_assert_eq(jnl_reader_open(jl, 0, &r), 0);
    size_t cap = 0;
    while ((rc = jnl_reader_next(r, &rec)) == 0) {
        if (rec.type == INGEST_REC_DISKS) {
            wire_disk_t disks[WIRE_MAX_DISKS];
            uint16_t n;
            char m[WIRE_MAX_NAME + 1];
            cr_assert_eq(ingest_rec_disks_parse(rec.data, rec.len, m, disks, &n), 0);
            if (j->disks_records < 8)
                snprintf(j->disks_machine[j->disks_records], sizeof j->disks_machine[0], "%s", m);
            j->disks_records++;
            continue;
        }
        cr_assert_eq(rec.type, INGEST_REC_BATCH, "record type %u", rec.type);
        cr_assert(!rec.compressed, "ingest appends with journal flags 0");
        ingest_batch_rec_t b;
        cr_assert_eq(ingest_rec_batch_parse(rec.data, rec.len, &b), 0);
        cr_assert_eq(tm_grow((void **)&j->b, &cap, j->nb + 1, sizeof j->b[0]), 0);
        ita_batch_rec_t *o2 = &j->b[j->nb++];
        snprintf(o2->machine, sizeof o2->machine, "%s", b.machine);
        o2->first_seq = b.first_seq;
        o2->count = b.count;
        o2->body_len = b.body_len;
        o2->body = tm_malloc(b.body_len);
        memcpy(o2->body, b.body, b.body_len);
    }
    cr_assert_eq(rc, -EAGAIN, "reader: %s", tm_strerror(rc));
    jnl_reader_close(r);
    jnl_close(jl);
    jnl_destroy(jl);
}

void ita_journal_free(ita_journal_t *j)
{
    for (size_t i = 0; i < j->nb; i++)
        tm_free(j->b[i].body);
    tm_free(j->b);
    memset(j, 0, sizeof *j);
}

size_t ita_count_batches(const ita_journal_t *j, const char *machine)
{
    size_t n = 0;
    for (size_t i = 0; i < j->nb; i++)
        n += strcmp(j->b[i].machine, machine) == 0;
    return n;
}
