/*
 * The agent protocol, version 1: frames between an agent and the appliance.
 * A leaf module: the agent and the server both link it, and it depends on
 * nothing but base/ and xxHash. docs/agent-protocol.md is the prose version;
 * change both together and bump WIRE_VERSION with any change once version 1
 * is released (until then a change is noted in the document's status).
 *
 * Every frame: a 16-byte header, then body_len bytes of body.
 *
 *   off size field
 *     0    2 type       WIRE_T_*
 *     2    2 flags      zero in version 1
 *     4    4 body_len   checked against the type's limit before anything is allocated
 *     8    8 checksum   XXH3-64 (seed 0) of header bytes 0..7 followed by the body
 *
 * All integers little-endian. Strings are a u8 length and that many bytes
 * (no terminator), with per-field limits and character rules.
 */
#ifndef TM_WIRE_H
#define TM_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_VERSION 1u
#define WIRE_HDR_LEN 16u

/* Named limits: every length from the wire is compared with one of these. */
#define WIRE_MAX_BODY (4u << 20 | 64u << 10) /* the largest body of any frame */
#define WIRE_MAX_BATCH_DATA (4u << 20)       /* data bytes in one records frame, uncompressed */
#define WIRE_MAX_BATCH_RECORDS 1024u
#define WIRE_MAX_WRITE (1u << 20)  /* one write's length */
#define WIRE_MAX_DISKS 64u
#define WIRE_MAX_NAME 63u          /* machine names, disk names, tag names */
#define WIRE_MAX_TEXT 255u         /* error text, versions */
#define WIRE_NONCE_LEN 32u
#define WIRE_MAC_LEN 32u
#define WIRE_SECTOR 512u           /* offsets and lengths of disk I/O are multiples */
/* Resync (docs/agent-protocol.md, "Resync"): block sizes are powers of two
 * in this range (a differing block travels as one write); a RESYNC_SUMS
 * frame holds at most WIRE_MAX_SUMS sums; the server keeps at most
 * WIRE_RESYNC_WINDOW of them sent and not acknowledged by RESYNC_ACK. */
#define WIRE_RESYNC_MIN_BLOCK 4096u
#define WIRE_RESYNC_MAX_BLOCK WIRE_MAX_WRITE
#define WIRE_MAX_SUMS 4096u
#define WIRE_RESYNC_WINDOW 4u
#define WIRE_RESYNC_REQUEST_LEN 16u  /* the RESYNC_REQUEST body */
#define WIRE_RESYNC_ACK_LEN 4u       /* the RESYNC_ACK body */
#define WIRE_RESYNC_SUMS_HDR_LEN 32u /* the RESYNC_SUMS body before its sums */
/* Group rounds (docs/agent-protocol.md, "Group rounds"): a GROUP_PREPARE's
 * hold limit is 1..WIRE_GROUP_MAX_HOLD_MS; a longer hold of a machine's
 * writes would outlast the time its applications give a disk. */
#define WIRE_GROUP_MAX_HOLD_MS 60000u
/*
 * The margin of a hold limit of hold_ms, in microseconds: a tenth of it, at
 * most 5 ms. An agent acts on its limit this much before it passes, so
 * that the usual lateness of its loop (a timer fires a little after its
 * time) keeps the hold within the limit; the coordinator decides a round
 * within the limit less twice the margin, so a COMMIT sent in time reaches
 * an agent before it acts (docs/agent-protocol.md, "Group rounds").
 */
#define WIRE_GROUP_HOLD_MARGIN_US(hold_ms) \
    ((uint64_t)(hold_ms) * 100u < 5000u ? (uint64_t)(hold_ms) * 100u : 5000u)
#define WIRE_GROUP_ROUND_LEN 8u      /* the GROUP_COMMIT and GROUP_ABORT bodies: u64 round */

typedef enum wire_type {
    /* agent -> server */
    WIRE_T_HELLO = 0x01,
    WIRE_T_AUTH = 0x02,
    WIRE_T_RECORDS = 0x03,
    WIRE_T_RESYNC_REQUEST = 0x04,
    WIRE_T_RESYNC_ACK = 0x05,
    WIRE_T_PREPARED = 0x06,
    /* server -> agent */
    WIRE_T_CHALLENGE = 0x81,
    WIRE_T_WELCOME = 0x82,
    WIRE_T_ACK = 0x83,
    WIRE_T_TAG_REQUEST = 0x84,
    WIRE_T_STOP = 0x85,
    WIRE_T_RESYNC_SUMS = 0x86,
    WIRE_T_RESUME = 0x87,
    WIRE_T_GROUP_PREPARE = 0x88,
    WIRE_T_GROUP_COMMIT = 0x89,
    WIRE_T_GROUP_ABORT = 0x8a,
    /* either way */
    WIRE_T_ERROR = 0xff,
} wire_type_t;

/* Error codes carried by ERROR frames; stable, part of the protocol. */
typedef enum wire_err {
    WIRE_E_PROTOCOL = 1,   /* malformed frame or body */
    WIRE_E_CHECKSUM = 2,   /* a frame or data checksum does not verify */
    WIRE_E_TOO_BIG = 3,    /* a length over its limit */
    WIRE_E_UNKNOWN_TYPE = 4,
    WIRE_E_VERSION = 5,    /* protocol version not spoken here */
    WIRE_E_AUTH = 6,       /* unknown machine or wrong secret */
    WIRE_E_BUSY = 7,       /* the machine already has a connection */
    WIRE_E_SEQUENCE = 8,   /* a stream sequence gap or repeat */
    WIRE_E_RANGE = 9,      /* I/O outside a disk, or unaligned */
    WIRE_E_DISKS = 10,     /* disks differ from the machine's registration */
    WIRE_E_INTERNAL = 11,  /* the server could not keep the data (journal failure) */
    WIRE_E_STOPPED = 12,   /* replication of the machine was stopped for good (retired) */
} wire_err_t;

const char *wire_err_name(int code);

/* ---- frame header and the incremental decoder ----------------------- */

typedef struct wire_hdr {
    uint16_t type;
    uint16_t flags;
    uint32_t body_len;
    uint64_t checksum;
} wire_hdr_t;

/* The limit on body_len for a type, 0 if the type is unknown. */
uint32_t wire_body_limit(uint16_t type);

/*
 * Decoder state lives in the session (Redis-style): feed it bytes as they
 * arrive; it says "need more", "a frame is ready" or "bad input". The body
 * buffer is allocated only after the header passed its limits, and is
 * reused between frames.
 */
typedef enum { WIRE_NEED_MORE, WIRE_FRAME, WIRE_BAD } wire_status_t;

typedef struct wire_decoder {
    uint8_t hdr_buf[WIRE_HDR_LEN];
    size_t hdr_have;
    wire_hdr_t hdr;
    uint8_t *body;
    size_t body_cap, body_have;
    bool in_body;
    int err;            /* WIRE_E_* when WIRE_BAD */
    char reason[128];   /* for the ERROR frame and the log */
} wire_decoder_t;

void wire_decoder_init(wire_decoder_t *d);
void wire_decoder_free(wire_decoder_t *d);

/*
 * Consume up to len bytes; *used says how many. On WIRE_FRAME, d->hdr and
 * d->body (d->hdr.body_len bytes, checksum verified) hold the frame until the
 * next call. On WIRE_BAD, d->err and d->reason say why; the decoder stays
 * bad. At most one frame is returned per call, so a caller bounds its work
 * per wakeup by bounding calls.
 */
wire_status_t wire_decode(wire_decoder_t *d, const uint8_t *buf, size_t len, size_t *used);

/* ---- encoding -------------------------------------------------------- */

/* A growable output buffer. */
typedef struct wire_buf {
    uint8_t *data;
    size_t len, cap;
    bool oom; /* an allocation failed; the content is incomplete */
} wire_buf_t;

void wire_buf_free(wire_buf_t *b);
void wire_buf_reset(wire_buf_t *b);

/* Start a frame of the given type; returns its start offset in b. Append the
 * body with wire_put_*, then wire_frame_end() fills length and checksum. */
size_t wire_frame_begin(wire_buf_t *b, uint16_t type);
int wire_frame_end(wire_buf_t *b, size_t start);

void wire_put_u8(wire_buf_t *b, uint8_t v);
void wire_put_u16(wire_buf_t *b, uint16_t v);
void wire_put_u32(wire_buf_t *b, uint32_t v);
void wire_put_u64(wire_buf_t *b, uint64_t v);
void wire_put_bytes(wire_buf_t *b, const void *p, size_t n);
/* A u8-length string; strings over 255 bytes are cut (callers check names). */
void wire_put_str(wire_buf_t *b, const char *s);

/* ---- reading bodies -------------------------------------------------- */

/* A cursor over a body that never reads past its end: a read past the end
 * sets `bad`, and every later read returns zeros. */
typedef struct wire_rd {
    const uint8_t *p;
    size_t left;
    bool bad;
} wire_rd_t;

void wire_rd_init(wire_rd_t *r, const uint8_t *p, size_t len);
uint8_t wire_get_u8(wire_rd_t *r);
uint16_t wire_get_u16(wire_rd_t *r);
uint32_t wire_get_u32(wire_rd_t *r);
uint64_t wire_get_u64(wire_rd_t *r);
const uint8_t *wire_get_bytes(wire_rd_t *r, size_t n);
/* A string into out (NUL-terminated), at most max bytes, else bad. */
void wire_get_str(wire_rd_t *r, char *out, size_t max);

/* Names (machines, disks, tags): 1..WIRE_MAX_NAME of [A-Za-z0-9._-], not
 * starting with '.' or '-'. Used for file names and export names later. */
bool wire_name_ok(const char *s);

#endif
