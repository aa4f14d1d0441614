/* Typed frame bodies of the agent protocol; layouts in msg.h. */
#include "msg.h"

#include <lz4.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "base/endian.h"
#include "base/mem.h"

static int __attribute__((format(printf, 4, 5))) wire__fail(int code, char *reason, size_t rlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, rlen, fmt, ap);
    va_end(ap);
    return code;
}

/* A body must be used up exactly: trailing bytes are a protocol error too. */
static int wire__finish(const wire_rd_t *r, const char *what, char *reason, size_t rlen)
{
    if (r->bad)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "%s body is truncated or has a bad field", what);
    if (r->left)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "%s body has %zu unexpected trailing bytes", what, r->left);
    return 0;
}

int wire_enc_hello(wire_buf_t *b, const wire_hello_t *m)
{
    if (m->ndisks > WIRE_MAX_DISKS)
        return -1;
    size_t f = wire_frame_begin(b, WIRE_T_HELLO);
    wire_put_u16(b, m->version);
    wire_put_u16(b, m->ndisks);
    wire_put_u32(b, 0);
    wire_put_str(b, m->machine);
    wire_put_str(b, m->agent_version);
    for (unsigned i = 0; i < m->ndisks; i++) {
        wire_put_str(b, m->disks[i].name);
        wire_put_u64(b, m->disks[i].size);
    }
    return wire_frame_end(b, f);
}

int wire_dec_hello(const uint8_t *body, size_t len, wire_hello_t *m, char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    memset(m, 0, sizeof *m);
    /* The version first: a later version may lay out the rest otherwise. */
    m->version = wire_get_u16(&r);
    if (!r.bad && m->version != WIRE_VERSION)
        return wire__fail(WIRE_E_VERSION, reason, rlen, "agent speaks protocol version %u; this server speaks %u",
                          m->version, WIRE_VERSION);
    m->ndisks = wire_get_u16(&r);
    uint32_t flags = wire_get_u32(&r);
    /* cut inside the fixed fields: truncated, not "0 disks" */
    if (r.bad)
        return wire__finish(&r, "hello", reason, rlen);
    if (flags)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "hello flags 0x%x are not defined", flags);
    if (m->ndisks == 0 || m->ndisks > WIRE_MAX_DISKS)
        return wire__fail(WIRE_E_TOO_BIG, reason, rlen, "hello names %u disks; 1 to %u are allowed", m->ndisks,
                          WIRE_MAX_DISKS);
    wire_get_str(&r, m->machine, WIRE_MAX_NAME);
    wire_get_str(&r, m->agent_version, WIRE_MAX_TEXT);
    if (!r.bad && !wire_name_ok(m->machine))
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "machine name is not 1-%u of [A-Za-z0-9._-]", WIRE_MAX_NAME);
    for (unsigned i = 0; i < m->ndisks && !r.bad; i++) {
        wire_get_str(&r, m->disks[i].name, WIRE_MAX_NAME);
        m->disks[i].size = wire_get_u64(&r);
        if (r.bad)
            break;
        if (!wire_name_ok(m->disks[i].name))
            return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "disk %u has a name that is not 1-%u of [A-Za-z0-9._-]",
                              i, WIRE_MAX_NAME);
        /* Sizes become off_t later: at most INT64_MAX. */
        if (m->disks[i].size == 0 || m->disks[i].size % WIRE_SECTOR || m->disks[i].size > INT64_MAX)
            return wire__fail(WIRE_E_RANGE, reason, rlen, "disk %s has size %llu, not a positive multiple of %u below 2^63",
                              m->disks[i].name, (unsigned long long)m->disks[i].size, WIRE_SECTOR);
        for (unsigned k = 0; k < i; k++)
            if (strcmp(m->disks[k].name, m->disks[i].name) == 0)
                return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "disk name %s appears twice", m->disks[i].name);
    }
    return wire__finish(&r, "hello", reason, rlen);
}

int wire_enc_challenge(wire_buf_t *b, const wire_challenge_t *m)
{
    size_t f = wire_frame_begin(b, WIRE_T_CHALLENGE);
    wire_put_bytes(b, m->nonce, WIRE_NONCE_LEN);
    wire_put_str(b, m->server_id);
    return wire_frame_end(b, f);
}

int wire_dec_challenge(const uint8_t *body, size_t len, wire_challenge_t *m, char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    const uint8_t *n = wire_get_bytes(&r, WIRE_NONCE_LEN);
    if (n)
        memcpy(m->nonce, n, WIRE_NONCE_LEN);
    wire_get_str(&r, m->server_id, WIRE_MAX_TEXT);
    return wire__finish(&r, "challenge", reason, rlen);
}

int wire_enc_auth(wire_buf_t *b, const uint8_t mac[WIRE_MAC_LEN])
{
    size_t f = wire_frame_begin(b, WIRE_T_AUTH);
    wire_put_bytes(b, mac, WIRE_MAC_LEN);
    return wire_frame_end(b, f);
}

int wire_dec_auth(const uint8_t *body, size_t len, uint8_t mac[WIRE_MAC_LEN], char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    const uint8_t *p = wire_get_bytes(&r, WIRE_MAC_LEN);
    if (p)
        memcpy(mac, p, WIRE_MAC_LEN);
    return wire__finish(&r, "auth", reason, rlen);
}

int wire_enc_welcome(wire_buf_t *b, const wire_welcome_t *m)
{
    if (m->ndisks > WIRE_MAX_DISKS)
        return -1;
    size_t f = wire_frame_begin(b, WIRE_T_WELCOME);
    wire_put_u64(b, m->next_seq);
    wire_put_u32(b, m->window_bytes);
    wire_put_u32(b, m->max_batch_data);
    wire_put_u16(b, m->ndisks);
    wire_put_bytes(b, m->disk_state, m->ndisks);
    return wire_frame_end(b, f);
}

int wire_dec_welcome(const uint8_t *body, size_t len, wire_welcome_t *m, char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    memset(m, 0, sizeof *m);
    m->next_seq = wire_get_u64(&r);
    m->window_bytes = wire_get_u32(&r);
    m->max_batch_data = wire_get_u32(&r);
    m->ndisks = wire_get_u16(&r);
    if (!r.bad && (m->ndisks == 0 || m->ndisks > WIRE_MAX_DISKS))
        return wire__fail(WIRE_E_TOO_BIG, reason, rlen, "welcome names %u disks; 1 to %u are allowed", m->ndisks,
                          WIRE_MAX_DISKS);
    const uint8_t *st = wire_get_bytes(&r, m->ndisks);
    if (st)
        memcpy(m->disk_state, st, m->ndisks);
    int rc = wire__finish(&r, "welcome", reason, rlen);
    if (rc == 0 && (m->next_seq == 0 || m->window_bytes == 0 || m->max_batch_data == 0 ||
                    m->max_batch_data > WIRE_MAX_BATCH_DATA))
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "welcome has impossible values");
    for (unsigned i = 0; rc == 0 && i < m->ndisks; i++)
        if (m->disk_state[i] > WIRE_DISK_SYNCED)
            return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "welcome: disk %u has state %u, which is not defined", i,
                              m->disk_state[i]);
    return rc;
}

int wire_enc_ack(wire_buf_t *b, uint64_t durable_seq)
{
    size_t f = wire_frame_begin(b, WIRE_T_ACK);
    wire_put_u64(b, durable_seq);
    return wire_frame_end(b, f);
}

int wire_dec_ack(const uint8_t *body, size_t len, uint64_t *durable_seq, char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    *durable_seq = wire_get_u64(&r);
    return wire__finish(&r, "ack", reason, rlen);
}

int wire_enc_tag_request(wire_buf_t *b, uint8_t tag_kind, uint64_t id, const char *name)
{
    size_t f = wire_frame_begin(b, WIRE_T_TAG_REQUEST);
    wire_put_u8(b, tag_kind);
    wire_put_u64(b, id);
    wire_put_str(b, name);
    return wire_frame_end(b, f);
}

int wire_dec_tag_request(const uint8_t *body, size_t len, uint8_t *tag_kind, uint64_t *id,
                         char name[WIRE_MAX_NAME + 1], char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    *tag_kind = wire_get_u8(&r);
    *id = wire_get_u64(&r);
    wire_get_str(&r, name, WIRE_MAX_NAME);
    int rc = wire__finish(&r, "tag request", reason, rlen);
    if (rc == 0 && (*tag_kind < WIRE_TAG_CRASH || *tag_kind > WIRE_TAG_GROUP))
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "tag kind %u is not defined", *tag_kind);
    /* the name goes into a tag record, where only names pass */
    if (rc == 0 && !wire_name_ok(name))
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "tag request name is not 1-%u of [A-Za-z0-9._-]",
                          WIRE_MAX_NAME);
    return rc;
}

int wire_enc_stop(wire_buf_t *b, uint64_t id, const char *name, const char *reason)
{
    if (!reason)
        reason = "";
    /* What the decoder would refuse is never sent: the name goes into the
     * agent's tag record, and a cut reason would say something else. */
    if (!name || !wire_name_ok(name) || strlen(reason) > WIRE_MAX_TEXT)
        return -1;
    size_t f = wire_frame_begin(b, WIRE_T_STOP);
    wire_put_u64(b, id);
    wire_put_str(b, name);
    wire_put_str(b, reason);
    return wire_frame_end(b, f);
}

int wire_dec_stop(const uint8_t *body, size_t len, wire_stop_t *m, char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    memset(m, 0, sizeof *m);
    m->id = wire_get_u64(&r);
    wire_get_str(&r, m->name, WIRE_MAX_NAME);
    wire_get_str(&r, m->reason, WIRE_MAX_TEXT);
    int rc = wire__finish(&r, "stop", reason, rlen);
    /* the name goes into a tag record, where only names pass */
    if (rc == 0 && !wire_name_ok(m->name))
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "stop: final tag name is not 1-%u of [A-Za-z0-9._-]",
                          WIRE_MAX_NAME);
    return rc;
}

int wire_enc_resume(wire_buf_t *b, const char *reason)
{
    if (!reason)
        reason = "";
    if (strlen(reason) > WIRE_MAX_TEXT)
        return -1;
    size_t f = wire_frame_begin(b, WIRE_T_RESUME);
    wire_put_str(b, reason);
    return wire_frame_end(b, f);
}

int wire_dec_resume(const uint8_t *body, size_t len, char text[WIRE_MAX_TEXT + 1], char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    wire_get_str(&r, text, WIRE_MAX_TEXT);
    return wire__finish(&r, "resume", reason, rlen);
}

int wire_enc_error(wire_buf_t *b, uint16_t code, const char *text)
{
    size_t f = wire_frame_begin(b, WIRE_T_ERROR);
    wire_put_u16(b, code);
    wire_put_str(b, text);
    return wire_frame_end(b, f);
}

int wire_dec_error(const uint8_t *body, size_t len, wire_error_t *m, char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    m->code = wire_get_u16(&r);
    wire_get_str(&r, m->text, WIRE_MAX_TEXT);
    return wire__finish(&r, "error", reason, rlen);
}

/* ---- resync ---- */

bool wire_resync_block_ok(uint32_t block_size)
{
    return block_size >= WIRE_RESYNC_MIN_BLOCK && block_size <= WIRE_RESYNC_MAX_BLOCK &&
           (block_size & (block_size - 1)) == 0;
}

uint64_t wire_sums_get(const wire_resync_sums_t *m, uint32_t i)
{
    return tm_get64(m->raw + 8u * i);
}

int wire_enc_resync_request(wire_buf_t *b, const wire_resync_request_t *m)
{
    size_t f = wire_frame_begin(b, WIRE_T_RESYNC_REQUEST);
    wire_put_u16(b, m->disk);
    wire_put_u16(b, 0);
    wire_put_u32(b, m->block_size);
    wire_put_u64(b, m->first_block);
    return wire_frame_end(b, f);
}

int wire_dec_resync_request(const uint8_t *body, size_t len, wire_resync_request_t *m, char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    m->disk = wire_get_u16(&r);
    uint16_t reserved = wire_get_u16(&r);
    m->block_size = wire_get_u32(&r);
    m->first_block = wire_get_u64(&r);
    int rc = wire__finish(&r, "resync request", reason, rlen);
    if (rc)
        return rc;
    if (reserved)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "resync request field that must be zero is %u", reserved);
    if (m->disk >= WIRE_MAX_DISKS)
        return wire__fail(WIRE_E_RANGE, reason, rlen, "resync request names disk %u", m->disk);
    if (!wire_resync_block_ok(m->block_size))
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen,
                          "resync block size %u is not a power of two from %u to %u", m->block_size,
                          WIRE_RESYNC_MIN_BLOCK, WIRE_RESYNC_MAX_BLOCK);
    return 0;
}

int wire_enc_resync_sums(wire_buf_t *b, const wire_resync_sums_t *m)
{
    if (m->count > WIRE_MAX_SUMS)
        return -1;
    size_t f = wire_frame_begin(b, WIRE_T_RESYNC_SUMS);
    wire_put_u16(b, m->disk);
    wire_put_u16(b, m->flags);
    wire_put_u32(b, m->block_size);
    wire_put_u64(b, m->seq);
    wire_put_u64(b, m->first_block);
    wire_put_u32(b, m->count);
    wire_put_u32(b, 0);
    for (uint32_t i = 0; i < m->count; i++)
        wire_put_u64(b, m->sums[i]);
    return wire_frame_end(b, f);
}

int wire_dec_resync_sums(const uint8_t *body, size_t len, wire_resync_sums_t *m, char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    memset(m, 0, sizeof *m);
    m->disk = wire_get_u16(&r);
    m->flags = wire_get_u16(&r);
    m->block_size = wire_get_u32(&r);
    m->seq = wire_get_u64(&r);
    m->first_block = wire_get_u64(&r);
    m->count = wire_get_u32(&r);
    uint32_t reserved = wire_get_u32(&r);
    if (r.bad)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "resync sums body is shorter than its header");
    if (m->count > WIRE_MAX_SUMS)
        return wire__fail(WIRE_E_TOO_BIG, reason, rlen, "resync sums frame holds %u sums; at most %u are allowed",
                          m->count, WIRE_MAX_SUMS);
    if ((uint64_t)m->count * 8u != r.left)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "resync sums body does not hold its %u sums", m->count);
    if (reserved || (m->flags & ~WIRE_SUMS_LAST))
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "resync sums fields that must be zero are not");
    if (m->disk >= WIRE_MAX_DISKS)
        return wire__fail(WIRE_E_RANGE, reason, rlen, "resync sums name disk %u", m->disk);
    if (!wire_resync_block_ok(m->block_size))
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen,
                          "resync block size %u is not a power of two from %u to %u", m->block_size,
                          WIRE_RESYNC_MIN_BLOCK, WIRE_RESYNC_MAX_BLOCK);
    if (m->count == 0 && !(m->flags & WIRE_SUMS_LAST))
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "resync sums frame without sums is not the last one");
    if (m->first_block > UINT64_MAX / m->block_size - m->count)
        return wire__fail(WIRE_E_RANGE, reason, rlen, "resync sums from block %llu run past 2^64 bytes",
                          (unsigned long long)m->first_block);
    m->raw = wire_get_bytes(&r, r.left);
    return 0;
}

int wire_enc_resync_ack(wire_buf_t *b, uint16_t disk, uint16_t frames)
{
    size_t f = wire_frame_begin(b, WIRE_T_RESYNC_ACK);
    wire_put_u16(b, disk);
    wire_put_u16(b, frames);
    return wire_frame_end(b, f);
}

int wire_dec_resync_ack(const uint8_t *body, size_t len, uint16_t *disk, uint16_t *frames, char *reason,
                        size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    *disk = wire_get_u16(&r);
    *frames = wire_get_u16(&r);
    int rc = wire__finish(&r, "resync ack", reason, rlen);
    if (rc)
        return rc;
    if (*disk >= WIRE_MAX_DISKS)
        return wire__fail(WIRE_E_RANGE, reason, rlen, "resync ack names disk %u", *disk);
    if (*frames == 0 || *frames > WIRE_RESYNC_WINDOW)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "resync ack of %u frames; 1 to %u are allowed", *frames,
                          WIRE_RESYNC_WINDOW);
    return 0;
}

/* ---- group rounds ---- */

static bool wire__group_prepare_ok(const wire_group_prepare_t *m)
{
    return m->round != 0 && (m->kind == WIRE_TAG_CRASH || m->kind == WIRE_TAG_APP) && m->hold_ms >= 1 &&
           m->hold_ms <= WIRE_GROUP_MAX_HOLD_MS && wire_name_ok(m->name);
}

int wire_enc_group_prepare(wire_buf_t *b, const wire_group_prepare_t *m)
{
    /* The name goes into the agent's tag record: what the decoder would
     * refuse is never sent. */
    if (!wire__group_prepare_ok(m))
        return -1;
    size_t f = wire_frame_begin(b, WIRE_T_GROUP_PREPARE);
    wire_put_u64(b, m->round);
    wire_put_u8(b, m->kind);
    wire_put_u32(b, m->hold_ms);
    wire_put_str(b, m->name);
    return wire_frame_end(b, f);
}

int wire_dec_group_prepare(const uint8_t *body, size_t len, wire_group_prepare_t *m, char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    memset(m, 0, sizeof *m);
    m->round = wire_get_u64(&r);
    m->kind = wire_get_u8(&r);
    m->hold_ms = wire_get_u32(&r);
    wire_get_str(&r, m->name, WIRE_MAX_NAME);
    int rc = wire__finish(&r, "group prepare", reason, rlen);
    if (rc)
        return rc;
    if (m->round == 0)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "group prepare: round ids start at 1");
    if (m->kind != WIRE_TAG_CRASH && m->kind != WIRE_TAG_APP)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "group prepare: kind %u is not defined (1 crash, 2 app)",
                          m->kind);
    if (m->hold_ms == 0 || m->hold_ms > WIRE_GROUP_MAX_HOLD_MS)
        return wire__fail(WIRE_E_RANGE, reason, rlen, "group prepare: hold limit of %u ms; 1 to %u are allowed",
                          m->hold_ms, WIRE_GROUP_MAX_HOLD_MS);
    /* the name goes into a tag record, where only names pass */
    if (!wire_name_ok(m->name))
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "group prepare: tag name is not 1-%u of [A-Za-z0-9._-]",
                          WIRE_MAX_NAME);
    return 0;
}

static bool wire__prepared_ok(const wire_prepared_t *m)
{
    size_t n = strlen(m->reason);
    if (m->round == 0 || n > WIRE_MAX_TEXT)
        return false;
    if (m->status == WIRE_PREPARED_HELD)
        return n == 0;
    return m->status == WIRE_PREPARED_FAILED && m->seq == 0 && n > 0;
}

int wire_enc_prepared(wire_buf_t *b, const wire_prepared_t *m)
{
    if (!wire__prepared_ok(m))
        return -1;
    size_t f = wire_frame_begin(b, WIRE_T_PREPARED);
    wire_put_u64(b, m->round);
    wire_put_u8(b, m->status);
    wire_put_u64(b, m->seq);
    wire_put_str(b, m->reason);
    return wire_frame_end(b, f);
}

int wire_dec_prepared(const uint8_t *body, size_t len, wire_prepared_t *m, char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    memset(m, 0, sizeof *m);
    m->round = wire_get_u64(&r);
    m->status = wire_get_u8(&r);
    m->seq = wire_get_u64(&r);
    wire_get_str(&r, m->reason, WIRE_MAX_TEXT);
    int rc = wire__finish(&r, "prepared", reason, rlen);
    if (rc)
        return rc;
    if (m->round == 0)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "prepared: round ids start at 1");
    if (m->status > WIRE_PREPARED_FAILED)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "prepared: status %u is not defined (0 held, 1 failed)",
                          m->status);
    /* One meaning per body: a hold has a position and nothing to explain,
     * a failure the reverse. */
    if (m->status == WIRE_PREPARED_HELD && m->reason[0])
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "prepared: a held round carries no reason");
    if (m->status == WIRE_PREPARED_FAILED && (m->seq || !m->reason[0]))
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen,
                          "prepared: a failed round carries a reason and no sequence (seq 0)");
    return 0;
}

static int wire__enc_round(wire_buf_t *b, uint16_t type, uint64_t round)
{
    if (round == 0)
        return -1;
    size_t f = wire_frame_begin(b, type);
    wire_put_u64(b, round);
    return wire_frame_end(b, f);
}

int wire_enc_group_commit(wire_buf_t *b, uint64_t round)
{
    return wire__enc_round(b, WIRE_T_GROUP_COMMIT, round);
}

int wire_enc_group_abort(wire_buf_t *b, uint64_t round)
{
    return wire__enc_round(b, WIRE_T_GROUP_ABORT, round);
}

static int wire__dec_round(const uint8_t *body, size_t len, uint64_t *round, const char *what, char *reason,
                           size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    *round = wire_get_u64(&r);
    int rc = wire__finish(&r, what, reason, rlen);
    if (rc == 0 && *round == 0)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "%s: round ids start at 1", what);
    return rc;
}

int wire_dec_group_commit(const uint8_t *body, size_t len, uint64_t *round, char *reason, size_t rlen)
{
    return wire__dec_round(body, len, round, "group commit", reason, rlen);
}

int wire_dec_group_abort(const uint8_t *body, size_t len, uint64_t *round, char *reason, size_t rlen)
{
    return wire__dec_round(body, len, round, "group abort", reason, rlen);
}

/* ---- records ---- */

/* Raw bytes an entry carries: a write's data or a tag's name. */
static uint32_t wire__entry_data(const wire_entry_t *e)
{
    return (e->kind == WIRE_R_WRITE || e->kind == WIRE_R_TAG) ? e->length : 0;
}

/* Writes shorter than this are sent raw: lz4 cannot win much on them. */
#define WIRE_COMPRESS_MIN 128u

int wire_enc_records(wire_buf_t *b, uint64_t first_seq, const wire_entry_t *entries, uint16_t count, bool compress)
{
    if (count == 0 || count > WIRE_MAX_BATCH_RECORDS)
        return -1;
    uint64_t raw_len = 0, bound = 0;
    for (unsigned i = 0; i < count; i++) {
        uint32_t n = wire__entry_data(&entries[i]);
        raw_len += n;
        bound += n ? (uint64_t)LZ4_compressBound((int)n) : 0;
    }
    if (raw_len > WIRE_MAX_BATCH_DATA)
        return -1;
    /* Compress each write on its own first: the entries, which come before
     * the data, say how many bytes each one takes. */
    uint8_t *packed = NULL;
    uint32_t *sizes = tm_malloc(count * sizeof *sizes);
    if (!sizes)
        return -1;
    if (compress && bound && !(packed = tm_malloc(bound))) {
        tm_free(sizes);
        return -1;
    }
    uint64_t stored_len = 0, po = 0;
    for (unsigned i = 0; i < count; i++) {
        const wire_entry_t *e = &entries[i];
        uint32_t n = wire__entry_data(e);
        sizes[i] = n;
        if (packed && e->kind == WIRE_R_WRITE && n >= WIRE_COMPRESS_MIN) {
            int room = LZ4_compressBound((int)n);
            int c = LZ4_compress_default((const char *)e->data, (char *)packed + po, (int)n, room);
            if (c > 0 && (uint32_t)c < n) {
                sizes[i] = (uint32_t)c | 0x80000000u; /* high bit: compressed */
                po += (uint64_t)c;
            }
        }
        stored_len += sizes[i] & 0x7fffffffu;
    }
    size_t f = wire_frame_begin(b, WIRE_T_RECORDS);
    wire_put_u64(b, first_seq);
    wire_put_u16(b, count);
    wire_put_u16(b, 0);
    wire_put_u32(b, (uint32_t)raw_len);
    wire_put_u32(b, (uint32_t)stored_len);
    for (unsigned i = 0; i < count; i++) {
        const wire_entry_t *e = &entries[i];
        wire_put_u8(b, e->kind);
        wire_put_u8(b, e->tag_kind);
        wire_put_u8(b, (sizes[i] & 0x80000000u) ? 1 : 0);
        wire_put_u8(b, 0);
        wire_put_u16(b, e->disk);
        wire_put_u16(b, 0);
        wire_put_u32(b, e->length);
        wire_put_u32(b, sizes[i] & 0x7fffffffu);
        wire_put_u64(b, e->offset);
        wire_put_u64(b, e->kind == WIRE_R_WRITE ? XXH3_64bits(e->data, e->length) : 0);
        wire_put_u64(b, e->id);
    }
    po = 0;
    for (unsigned i = 0; i < count; i++) {
        uint32_t n = sizes[i] & 0x7fffffffu;
        if (sizes[i] & 0x80000000u) {
            wire_put_bytes(b, packed + po, n);
            po += n;
        } else if (n) {
            wire_put_bytes(b, entries[i].data, n);
        }
    }
    tm_free(packed);
    tm_free(sizes);
    return wire_frame_end(b, f);
}

static int wire__check_entry(const wire_entry_t *e, unsigned i, char *reason, size_t rlen)
{
    switch (e->kind) {
    case WIRE_R_WRITE:
        if (e->length == 0 || e->length > WIRE_MAX_WRITE)
            return wire__fail(WIRE_E_TOO_BIG, reason, rlen, "record %u: write of %u bytes; 1 to %u are allowed", i,
                              e->length, WIRE_MAX_WRITE);
        if (e->codec > 1 || (e->codec == 0 && e->stored != e->length) ||
            (e->codec == 1 && (e->stored == 0 || e->stored >= e->length)))
            return wire__fail(WIRE_E_PROTOCOL, reason, rlen,
                              "record %u: write of %u bytes sent as %u bytes with codec %u", i, e->length, e->stored,
                              e->codec);
        /* writes are ranges too */
        __attribute__((fallthrough));
    case WIRE_R_ZERO:
    case WIRE_R_TRIM:
        /* a range past 2^64 would wrap a later "offset + length > size" check */
        if (e->length == 0 || e->offset % WIRE_SECTOR || e->length % WIRE_SECTOR || e->offset > UINT64_MAX - e->length)
            return wire__fail(WIRE_E_RANGE, reason, rlen,
                              "record %u: range at %llu of %u bytes is empty, not a multiple of %u or past 2^64", i,
                              (unsigned long long)e->offset, e->length, WIRE_SECTOR);
        if (e->disk >= WIRE_MAX_DISKS || e->tag_kind || (e->kind != WIRE_R_WRITE && (e->hash || e->stored || e->codec)) ||
            e->id)
            return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "record %u: fields that must be zero are not", i);
        return 0;
    case WIRE_R_TAG:
        if (e->tag_kind < WIRE_TAG_CRASH || e->tag_kind > WIRE_TAG_GROUP)
            return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "record %u: tag kind %u is not defined", i, e->tag_kind);
        if (e->length == 0 || e->length > WIRE_MAX_NAME || e->stored != e->length || e->codec || e->disk ||
            e->offset || e->hash)
            return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "record %u: tag fields are out of range", i);
        return 0;
    case WIRE_R_FLUSH:
        if (e->length || e->stored || e->codec || e->disk || e->offset || e->hash || e->id || e->tag_kind)
            return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "record %u: flush fields must be zero", i);
        return 0;
    case WIRE_R_SYNCED:
    case WIRE_R_RESYNC: {
        const char *what = e->kind == WIRE_R_SYNCED ? "synced" : "resync";
        if (e->disk >= WIRE_MAX_DISKS)
            return wire__fail(WIRE_E_RANGE, reason, rlen, "record %u: %s names disk %u", i, what, e->disk);
        if (e->length || e->stored || e->codec || e->offset || e->hash || e->id || e->tag_kind)
            return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "record %u: %s fields other than disk must be zero", i,
                              what);
        return 0;
    }
    }
    return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "record %u: kind %u is not defined", i, e->kind);
}

int wire_dec_records_entries(const uint8_t *body, size_t len, wire_records_t *m, char *reason, size_t rlen)
{
    wire_rd_t r;
    wire_rd_init(&r, body, len);
    m->first_seq = wire_get_u64(&r);
    m->count = wire_get_u16(&r);
    uint16_t reserved = wire_get_u16(&r);
    m->raw_len = wire_get_u32(&r);
    m->stored_len = wire_get_u32(&r);
    if (r.bad)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "records body is shorter than its header");
    if (m->first_seq == 0)
        return wire__fail(WIRE_E_SEQUENCE, reason, rlen, "stream sequence numbers start at 1");
    if (m->count == 0 || m->count > WIRE_MAX_BATCH_RECORDS)
        return wire__fail(WIRE_E_TOO_BIG, reason, rlen, "records frame holds %u records; 1 to %u are allowed",
                          m->count, WIRE_MAX_BATCH_RECORDS);
    /* the last record's sequence, first_seq + count - 1, must not wrap to 0 */
    if (m->first_seq > UINT64_MAX - (m->count - 1u))
        return wire__fail(WIRE_E_SEQUENCE, reason, rlen, "records from sequence %llu on run past the last one",
                          (unsigned long long)m->first_seq);
    if (reserved)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "records header field that must be zero is %u", reserved);
    if (m->raw_len > WIRE_MAX_BATCH_DATA)
        return wire__fail(WIRE_E_TOO_BIG, reason, rlen, "records data of %u bytes is over the limit of %u",
                          m->raw_len, WIRE_MAX_BATCH_DATA);
    if (m->stored_len > m->raw_len)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "records data sent (%u bytes) is larger than the raw data (%u)",
                          m->stored_len, m->raw_len);
    if ((uint64_t)m->count * WIRE_ENTRY_LEN + m->stored_len != r.left)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen,
                          "records body length does not match its %u entries and %u data bytes", m->count,
                          m->stored_len);

    uint64_t need_raw = 0, need_stored = 0;
    for (unsigned i = 0; i < m->count; i++) {
        wire_entry_t *e = &m->entries[i];
        e->kind = wire_get_u8(&r);
        e->tag_kind = wire_get_u8(&r);
        e->codec = wire_get_u8(&r);
        uint8_t r1 = wire_get_u8(&r);
        e->disk = wire_get_u16(&r);
        uint16_t r2 = wire_get_u16(&r);
        e->length = wire_get_u32(&r);
        e->stored = wire_get_u32(&r);
        e->offset = wire_get_u64(&r);
        e->hash = wire_get_u64(&r);
        e->id = wire_get_u64(&r);
        e->data = e->stored_data = NULL;
        e->stored_off = 0;
        if (r1 || r2)
            return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "record %u: fields that must be zero are not", i);
        int rc = wire__check_entry(e, i, reason, rlen);
        if (rc)
            return rc;
        need_raw += wire__entry_data(e);
        need_stored += e->stored;
    }
    if (need_raw != m->raw_len || need_stored != m->stored_len)
        return wire__fail(WIRE_E_PROTOCOL, reason, rlen,
                          "entries need %llu raw and %llu sent data bytes but the frame says %u and %u",
                          (unsigned long long)need_raw, (unsigned long long)need_stored, m->raw_len, m->stored_len);
    const uint8_t *data = wire_get_bytes(&r, m->stored_len);
    size_t so = 0;
    for (unsigned i = 0; i < m->count; i++) {
        wire_entry_t *e = &m->entries[i];
        e->stored_data = data + so;
        e->stored_off = (uint32_t)(e->stored_data - body);
        so += e->stored;
    }
    return 0;
}

int wire_dec_records(const uint8_t *body, size_t len, wire_records_t *m, uint8_t *scratch, char *reason,
                     size_t rlen)
{
    int rc = wire_dec_records_entries(body, len, m, reason, rlen);
    if (rc)
        return rc;
    size_t ro = 0;
    for (unsigned i = 0; i < m->count; i++) {
        wire_entry_t *e = &m->entries[i];
        if (e->codec == 1) {
            int n = LZ4_decompress_safe((const char *)e->stored_data, (char *)scratch + ro, (int)e->stored,
                                        (int)e->length);
            if (n < 0 || (uint32_t)n != e->length)
                return wire__fail(WIRE_E_PROTOCOL, reason, rlen,
                                  "record %u (sequence %llu): write data does not decompress to %u bytes", i,
                                  (unsigned long long)(m->first_seq + i), e->length);
            e->data = scratch + ro;
            ro += e->length;
        } else if (e->stored) {
            e->data = e->stored_data;
        }
        if (e->kind == WIRE_R_WRITE && XXH3_64bits(e->data, e->length) != e->hash)
            return wire__fail(WIRE_E_CHECKSUM, reason, rlen, "record %u (sequence %llu): write data fails its checksum",
                              i, (unsigned long long)(m->first_seq + i));
        if (e->kind == WIRE_R_TAG) {
            char name[WIRE_MAX_NAME + 1];
            memcpy(name, e->data, e->length);
            name[e->length] = '\0';
            if (memchr(name, '\0', e->length) || !wire_name_ok(name))
                return wire__fail(WIRE_E_PROTOCOL, reason, rlen, "record %u: tag name is not 1-%u of [A-Za-z0-9._-]",
                                  i, WIRE_MAX_NAME);
        }
    }
    return 0;
}
