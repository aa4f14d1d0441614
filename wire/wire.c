/* Frame header, incremental decoder and the encode/decode helpers of the
 * agent protocol; the layout is in wire.h. */
#include "wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
/* XXH3_state_t on the stack needs its layout. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "base/endian.h"
#include "base/mem.h"

const char *wire_err_name(int code)
{
    switch (code) {
    case WIRE_E_PROTOCOL: return "protocol";
    case WIRE_E_CHECKSUM: return "checksum";
    case WIRE_E_TOO_BIG: return "too-big";
    case WIRE_E_UNKNOWN_TYPE: return "unknown-type";
    case WIRE_E_VERSION: return "version";
    case WIRE_E_AUTH: return "auth";
    case WIRE_E_BUSY: return "busy";
    case WIRE_E_SEQUENCE: return "sequence";
    case WIRE_E_RANGE: return "range";
    case WIRE_E_DISKS: return "disks";
    case WIRE_E_INTERNAL: return "internal";
    case WIRE_E_STOPPED: return "stopped";
    }
    return "unknown";
}

uint32_t wire_body_limit(uint16_t type)
{
    switch (type) {
    case WIRE_T_HELLO:
        /* version, disk count, flags, two strings, disks of name + size */
        return 8 + 2 * 256 + WIRE_MAX_DISKS * (1 + WIRE_MAX_NAME + 8);
    case WIRE_T_AUTH: return WIRE_MAC_LEN;
    case WIRE_T_RECORDS: return WIRE_MAX_BODY;
    case WIRE_T_CHALLENGE: return WIRE_NONCE_LEN + 256;
    case WIRE_T_WELCOME: return 8 + 4 + 4 + 2 + WIRE_MAX_DISKS;
    case WIRE_T_ACK: return 8;
    case WIRE_T_TAG_REQUEST: return 16 + 256;
    /* id, then a name and a text of at most their limits */
    case WIRE_T_STOP: return 8 + (1 + WIRE_MAX_NAME) + (1 + WIRE_MAX_TEXT);
    case WIRE_T_RESUME: return 1 + WIRE_MAX_TEXT;
    case WIRE_T_RESYNC_REQUEST: return WIRE_RESYNC_REQUEST_LEN;
    case WIRE_T_RESYNC_ACK: return WIRE_RESYNC_ACK_LEN;
    case WIRE_T_RESYNC_SUMS: return WIRE_RESYNC_SUMS_HDR_LEN + 8u * WIRE_MAX_SUMS;
    /* round, kind, hold_ms, a name */
    case WIRE_T_GROUP_PREPARE: return 8 + 1 + 4 + (1 + WIRE_MAX_NAME);
    /* round, status, seq, a text */
    case WIRE_T_PREPARED: return 8 + 1 + 8 + (1 + WIRE_MAX_TEXT);
    case WIRE_T_GROUP_COMMIT:
    case WIRE_T_GROUP_ABORT: return WIRE_GROUP_ROUND_LEN;
    case WIRE_T_ERROR: return 2 + 256;
    }
    return 0;
}

void wire_decoder_init(wire_decoder_t *d)
{
    memset(d, 0, sizeof *d);
}

void wire_decoder_free(wire_decoder_t *d)
{
    tm_free(d->body);
    memset(d, 0, sizeof *d);
}

static wire_status_t __attribute__((format(printf, 3, 4))) wire__bad(wire_decoder_t *d, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof d->reason, fmt, ap);
    va_end(ap);
    d->err = err;
    return WIRE_BAD;
}

wire_status_t wire_decode(wire_decoder_t *d, const uint8_t *buf, size_t len, size_t *used)
{
    *used = 0;
    if (d->err)
        return WIRE_BAD;
    if (!d->in_body) {
        size_t take = WIRE_HDR_LEN - d->hdr_have;
        if (take > len)
            take = len;
        if (take)
            memcpy(d->hdr_buf + d->hdr_have, buf, take);
        d->hdr_have += take;
        *used += take;
        if (d->hdr_have < WIRE_HDR_LEN)
            return WIRE_NEED_MORE;
        d->hdr.type = tm_get16(d->hdr_buf);
        d->hdr.flags = tm_get16(d->hdr_buf + 2);
        d->hdr.body_len = tm_get32(d->hdr_buf + 4);
        d->hdr.checksum = tm_get64(d->hdr_buf + 8);
        uint32_t limit = wire_body_limit(d->hdr.type);
        if (limit == 0)
            return wire__bad(d, WIRE_E_UNKNOWN_TYPE, "unknown frame type 0x%x", d->hdr.type);
        if (d->hdr.flags != 0)
            return wire__bad(d, WIRE_E_PROTOCOL, "frame flags 0x%x are not defined in version %u", d->hdr.flags,
                             WIRE_VERSION);
        if (d->hdr.body_len > limit)
            return wire__bad(d, WIRE_E_TOO_BIG, "frame body of %u bytes is over the limit of %u", d->hdr.body_len,
                             limit);
        /* Only now, with the length known to be within its limit, is the
         * body buffer sized. */
        if (d->hdr.body_len > d->body_cap) {
            uint8_t *p = tm_realloc(d->body, d->hdr.body_len);
            if (!p)
                return wire__bad(d, WIRE_E_INTERNAL, "out of memory for a %u-byte frame", d->hdr.body_len);
            d->body = p;
            d->body_cap = d->hdr.body_len;
        }
        d->body_have = 0;
        d->in_body = true;
        buf += take;
        len -= take;
    }
    size_t take = d->hdr.body_len - d->body_have;
    if (take > len)
        take = len;
    if (take)
        memcpy(d->body + d->body_have, buf, take);
    d->body_have += take;
    *used += take;
    if (d->body_have < d->hdr.body_len)
        return WIRE_NEED_MORE;

    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, d->hdr_buf, 8);
    XXH3_64bits_update(&st, d->body, d->hdr.body_len);
    if (XXH3_64bits_digest(&st) != d->hdr.checksum)
        return wire__bad(d, WIRE_E_CHECKSUM, "frame of type 0x%x with %u body bytes fails its checksum", d->hdr.type,
                         d->hdr.body_len);
    d->in_body = false;
    d->hdr_have = 0;
    return WIRE_FRAME;
}

/* ---- encoding ---- */

void wire_buf_free(wire_buf_t *b)
{
    tm_free(b->data);
    memset(b, 0, sizeof *b);
}

void wire_buf_reset(wire_buf_t *b)
{
    b->len = 0;
    b->oom = false;
}

static uint8_t *wire__grow(wire_buf_t *b, size_t n)
{
    if (b->oom)
        return NULL;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = tm_realloc(b->data, cap);
        if (!p) {
            b->oom = true;
            return NULL;
        }
        b->data = p;
        b->cap = cap;
    }
    uint8_t *at = b->data + b->len;
    b->len += n;
    return at;
}

size_t wire_frame_begin(wire_buf_t *b, uint16_t type)
{
    size_t start = b->len;
    uint8_t *p = wire__grow(b, WIRE_HDR_LEN);
    if (p) {
        memset(p, 0, WIRE_HDR_LEN);
        tm_put16(p, type);
    }
    return start;
}

int wire_frame_end(wire_buf_t *b, size_t start)
{
    if (b->oom)
        return -1;
    uint8_t *h = b->data + start;
    size_t body = b->len - start - WIRE_HDR_LEN;
    if (body > wire_body_limit(tm_get16(h))) {
        b->len = start; /* leave no half-built frame behind */
        return -1;
    }
    tm_put32(h + 4, (uint32_t)body);
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, h, 8);
    XXH3_64bits_update(&st, h + WIRE_HDR_LEN, body);
    tm_put64(h + 8, XXH3_64bits_digest(&st));
    return 0;
}

void wire_put_u8(wire_buf_t *b, uint8_t v)
{
    uint8_t *p = wire__grow(b, 1);
    if (p)
        *p = v;
}

void wire_put_u16(wire_buf_t *b, uint16_t v)
{
    uint8_t *p = wire__grow(b, 2);
    if (p)
        tm_put16(p, v);
}

void wire_put_u32(wire_buf_t *b, uint32_t v)
{
    uint8_t *p = wire__grow(b, 4);
    if (p)
        tm_put32(p, v);
}

void wire_put_u64(wire_buf_t *b, uint64_t v)
{
    uint8_t *p = wire__grow(b, 8);
    if (p)
        tm_put64(p, v);
}

void wire_put_bytes(wire_buf_t *b, const void *src, size_t n)
{
    uint8_t *p = wire__grow(b, n);
    if (p && n)
        memcpy(p, src, n);
}

void wire_put_str(wire_buf_t *b, const char *s)
{
    size_t n = strlen(s);
    if (n > 255)
        n = 255;
    wire_put_u8(b, (uint8_t)n);
    wire_put_bytes(b, s, n);
}

/* ---- reading ---- */

void wire_rd_init(wire_rd_t *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->left = len;
    r->bad = false;
}

const uint8_t *wire_get_bytes(wire_rd_t *r, size_t n)
{
    if (r->bad || n > r->left) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    r->left -= n;
    return at;
}

uint8_t wire_get_u8(wire_rd_t *r)
{
    const uint8_t *p = wire_get_bytes(r, 1);
    return p ? *p : 0;
}

uint16_t wire_get_u16(wire_rd_t *r)
{
    const uint8_t *p = wire_get_bytes(r, 2);
    return p ? tm_get16(p) : 0;
}

uint32_t wire_get_u32(wire_rd_t *r)
{
    const uint8_t *p = wire_get_bytes(r, 4);
    return p ? tm_get32(p) : 0;
}

uint64_t wire_get_u64(wire_rd_t *r)
{
    const uint8_t *p = wire_get_bytes(r, 8);
    return p ? tm_get64(p) : 0;
}

void wire_get_str(wire_rd_t *r, char *out, size_t max)
{
    out[0] = '\0';
    uint8_t n = wire_get_u8(r);
    if (n > max) {
        r->bad = true;
        return;
    }
    const uint8_t *p = wire_get_bytes(r, n);
    if (!p)
        return;
    memcpy(out, p, n);
    out[n] = '\0';
    if (memchr(out, '\0', n))
        r->bad = true;
}

bool wire_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > WIRE_MAX_NAME || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}
