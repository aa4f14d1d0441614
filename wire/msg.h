/*
 * Frame bodies of the agent protocol, version 1: typed encoders and
 * decoders. Decoders check every field against its limit and return 0 or a
 * WIRE_E_* code with a reason a person can act on; they never read past the
 * body and never allocate on a length they have not checked.
 *
 * Bodies (LE integers; str = u8 length + bytes):
 *
 *   HELLO      u16 version, u16 ndisks, u32 flags (0), str machine, str agent_version,
 *              ndisks x { str name, u64 size }
 *   CHALLENGE  u8[32] nonce, str server_id
 *   AUTH       u8[32] HMAC-SHA256(secret, "tidemark-auth-v1" | nonce | machine)
 *   WELCOME    u64 next_seq (the first stream sequence the server wants),
 *              u32 window_bytes, u32 max_batch_data, u16 ndisks (1..64, the
 *              machine's disks), ndisks x u8 state (WIRE_DISK_*: 0 the
 *              appliance holds no full copy of the disk yet, send it whole;
 *              1 protected, send changes only)
 *   RECORDS    u64 first_seq, u16 count, u16 reserved (0), u32 raw_len, u32 stored_len,
 *              count x entry (40 bytes), stored_len data bytes
 *     entry:   u8 kind, u8 tag_kind, u8 codec, u8 reserved, u16 disk, u16 reserved,
 *              u32 length, u32 stored, u64 offset, u64 hash, u64 id
 *              write: `stored` data bytes follow in the data, raw (codec 0, stored ==
 *              length) or one lz4 block of its own (codec 1, stored < length), and
 *              hash = XXH3-64 of the raw bytes; each write compressed on its own so
 *              that one write can later be read back without its neighbours.
 *              zero, trim: a range, no data; tag: length = stored = name bytes in the
 *              data, id = the tag's id; flush: nothing; synced: disk d's initial
 *              copy (or resync) is complete (disk set, every other field 0);
 *              resync: disk d's resync begins, the appliance's copy of it is not
 *              crash-consistent until the next synced of d (disk set, every other
 *              field 0). Record i has stream sequence first_seq + i. raw_len and
 *              stored_len are the sums.
 *   ACK        u64 durable_seq (every record up to it is durable)
 *   TAG_REQUEST u8 tag_kind, u64 id, str name
 *   STOP       u64 id, str name (a wire name), str reason: take no new writes;
 *              once every write accepted before is in the stream, append a
 *              crash tag with this id and name (the final tag)
 *   RESUME     str reason: take writes again (nothing when not stopped)
 *   RESYNC_REQUEST  u16 disk, u16 reserved (0), u32 block_size (a power of two,
 *              WIRE_RESYNC_MIN_BLOCK..WIRE_RESYNC_MAX_BLOCK), u64 first_block:
 *              send the sums of disk's blocks from first_block to its end
 *   RESYNC_SUMS u16 disk, u16 flags (WIRE_SUMS_LAST), u32 block_size, u64 seq (the
 *              stream sequence the appliance's copy is as of), u64 first_block,
 *              u32 count (0..WIRE_MAX_SUMS; 0 only with LAST), u32 reserved (0),
 *              count x u64 XXH3-64 of each block (the disk's last block may be
 *              short: its sum covers the bytes inside the disk)
 *   RESYNC_ACK u16 disk, u16 frames (1..WIRE_RESYNC_WINDOW): that many more SUMS
 *              frames were taken; the server may send as many more
 *   GROUP_PREPARE  u64 round (1..), u8 kind (WIRE_TAG_CRASH or WIRE_TAG_APP),
 *              u32 hold_ms (1..WIRE_GROUP_MAX_HOLD_MS), str name (a wire name:
 *              the group tag's): hold the completion of new writes, wait
 *              until every write accepted before is in the stream, answer
 *              PREPARED; never hold longer than hold_ms without a decision
 *   PREPARED   u64 round, u8 status (WIRE_PREPARED_*), u64 seq, str reason:
 *              held: seq is the last record of the stream before the hold
 *              (the group tag follows it, with no write between them) and
 *              reason is empty; failed: seq is 0 and reason (1..255 bytes)
 *              says why
 *   GROUP_COMMIT  u64 round: append the group tag (tag kind WIRE_TAG_GROUP,
 *              id = round, the PREPARE's name), then release the held writes
 *   GROUP_ABORT   u64 round: release the held writes, no tag
 *   ERROR      u16 code (WIRE_E_*), str text
 */
#ifndef TM_WIRE_MSG_H
#define TM_WIRE_MSG_H

#include "wire/wire.h"

typedef struct wire_disk {
    char name[WIRE_MAX_NAME + 1];
    uint64_t size;
} wire_disk_t;

typedef struct wire_hello {
    uint16_t version;
    uint16_t ndisks;
    char machine[WIRE_MAX_NAME + 1];
    char agent_version[WIRE_MAX_TEXT + 1];
    wire_disk_t disks[WIRE_MAX_DISKS];
} wire_hello_t;

typedef struct wire_challenge {
    uint8_t nonce[WIRE_NONCE_LEN];
    char server_id[WIRE_MAX_TEXT + 1];
} wire_challenge_t;

/* A disk's state in the WELCOME. */
#define WIRE_DISK_NEW 0u    /* no full copy at the appliance: the agent sends it whole, then SYNCED */
#define WIRE_DISK_SYNCED 1u /* the appliance holds a full copy: changes only */

typedef struct wire_welcome {
    uint64_t next_seq;
    uint32_t window_bytes;
    uint32_t max_batch_data;
    uint16_t ndisks;                         /* 1..WIRE_MAX_DISKS */
    uint8_t disk_state[WIRE_MAX_DISKS];      /* WIRE_DISK_* per disk index */
} wire_welcome_t;

/* WIRE_R_SYNCED: the records of disk `disk` before it in the stream, applied
 * to a zero disk, give a full copy of it (its initial copy is complete). */
typedef enum {
    WIRE_R_WRITE = 1,
    WIRE_R_ZERO = 2,
    WIRE_R_TRIM = 3,
    WIRE_R_TAG = 4,
    WIRE_R_FLUSH = 5,
    WIRE_R_SYNCED = 6,
    WIRE_R_RESYNC = 7, /* disk d's resync begins: not crash-consistent until its SYNCED */
} wire_rkind_t;
typedef enum { WIRE_TAG_CRASH = 1, WIRE_TAG_APP = 2, WIRE_TAG_GROUP = 3 } wire_tag_kind_t;

#define WIRE_ENTRY_LEN 40u
#define WIRE_RECORDS_HDR_LEN 20u

typedef struct wire_entry {
    uint8_t kind;
    uint8_t tag_kind;
    uint8_t codec;   /* decoded: 0 raw, 1 lz4; the encoder chooses */
    uint16_t disk;
    uint32_t length;
    uint32_t stored; /* decoded: bytes of this record in the data section */
    uint64_t offset;
    uint64_t hash;
    uint64_t id;
    /* encode: the raw bytes (writes, tag names); decode: the raw bytes,
     * in the scratch buffer or in the body */
    const uint8_t *data;
    /* decoded only: the bytes as sent, in the body, and their offset in it */
    const uint8_t *stored_data;
    uint32_t stored_off;
} wire_entry_t;

typedef struct wire_records {
    uint64_t first_seq;
    uint16_t count;
    uint32_t raw_len;
    uint32_t stored_len;
    wire_entry_t entries[WIRE_MAX_BATCH_RECORDS];
} wire_records_t;

typedef struct wire_error {
    uint16_t code;
    char text[WIRE_MAX_TEXT + 1];
} wire_error_t;

typedef struct wire_stop {
    uint64_t id;                    /* the final tag's id */
    char name[WIRE_MAX_NAME + 1];   /* the final tag's name: passes wire_name_ok */
    char reason[WIRE_MAX_TEXT + 1]; /* for the agent's log */
} wire_stop_t;

/* PREPARED status */
#define WIRE_PREPARED_HELD 0u   /* holding, the stream drained up to seq */
#define WIRE_PREPARED_FAILED 1u /* no hold (or no longer): reason says why */

typedef struct wire_group_prepare {
    uint64_t round;                 /* 1..; the group tag's id */
    uint8_t kind;                   /* WIRE_TAG_CRASH or WIRE_TAG_APP */
    uint32_t hold_ms;               /* 1..WIRE_GROUP_MAX_HOLD_MS */
    char name[WIRE_MAX_NAME + 1];   /* the group tag's name: passes wire_name_ok */
} wire_group_prepare_t;

typedef struct wire_prepared {
    uint64_t round;                 /* 1.. */
    uint8_t status;                 /* WIRE_PREPARED_* */
    uint64_t seq;                   /* held: the last record before the hold; failed: 0 */
    char reason[WIRE_MAX_TEXT + 1]; /* held: empty; failed: 1..WIRE_MAX_TEXT bytes */
} wire_prepared_t;

/* RESYNC_SUMS flags */
#define WIRE_SUMS_LAST 1u /* the disk's last block is in this frame (or first_block is past it) */

typedef struct wire_resync_request {
    uint16_t disk;
    uint32_t block_size;
    uint64_t first_block;
} wire_resync_request_t;

typedef struct wire_resync_sums {
    uint16_t disk;
    uint16_t flags;
    uint32_t block_size;
    uint64_t seq;
    uint64_t first_block;
    uint32_t count;
    /* encode: count sums; decode: NULL, read them with wire_sums_get() */
    const uint64_t *sums;
    const uint8_t *raw; /* decoded: the count x 8 little-endian bytes, in the body */
} wire_resync_sums_t;

/* Sum i of a decoded RESYNC_SUMS (i < count). */
uint64_t wire_sums_get(const wire_resync_sums_t *m, uint32_t i);

/* True for a power of two in WIRE_RESYNC_MIN_BLOCK..WIRE_RESYNC_MAX_BLOCK. */
bool wire_resync_block_ok(uint32_t block_size);

/* Encoders append one whole frame to b; 0 or -1 (out of memory or over a limit). */
int wire_enc_hello(wire_buf_t *b, const wire_hello_t *m);
int wire_enc_challenge(wire_buf_t *b, const wire_challenge_t *m);
int wire_enc_auth(wire_buf_t *b, const uint8_t mac[WIRE_MAC_LEN]);
int wire_enc_welcome(wire_buf_t *b, const wire_welcome_t *m);
int wire_enc_ack(wire_buf_t *b, uint64_t durable_seq);
int wire_enc_tag_request(wire_buf_t *b, uint8_t tag_kind, uint64_t id, const char *name);
/* STOP: -1 also for a name that is not a wire name or a reason over
 * WIRE_MAX_TEXT bytes (NULL: ""); RESUME likewise for its reason. */
int wire_enc_stop(wire_buf_t *b, uint64_t id, const char *name, const char *reason);
int wire_enc_resume(wire_buf_t *b, const char *reason);
int wire_enc_error(wire_buf_t *b, uint16_t code, const char *text);
int wire_enc_resync_request(wire_buf_t *b, const wire_resync_request_t *m);
int wire_enc_resync_sums(wire_buf_t *b, const wire_resync_sums_t *m);
int wire_enc_resync_ack(wire_buf_t *b, uint16_t disk, uint16_t frames);
/* Group rounds: -1 also for what the decoders refuse (round 0, a kind,
 * hold or name out of range, a PREPARED whose seq or reason does not fit
 * its status). */
int wire_enc_group_prepare(wire_buf_t *b, const wire_group_prepare_t *m);
int wire_enc_prepared(wire_buf_t *b, const wire_prepared_t *m);
int wire_enc_group_commit(wire_buf_t *b, uint64_t round);
int wire_enc_group_abort(wire_buf_t *b, uint64_t round);
/* Records: entries[i].data points at each write's bytes and each tag's name
 * (length bytes); hashes of writes are computed here. With compress, each
 * write travels as its own lz4 block when that is smaller. */
int wire_enc_records(wire_buf_t *b, uint64_t first_seq, const wire_entry_t *entries, uint16_t count, bool compress);

/* Decoders: body as the decoder returned it; reason gets a sentence on error. */
int wire_dec_hello(const uint8_t *body, size_t len, wire_hello_t *m, char *reason, size_t rlen);
int wire_dec_challenge(const uint8_t *body, size_t len, wire_challenge_t *m, char *reason, size_t rlen);
int wire_dec_auth(const uint8_t *body, size_t len, uint8_t mac[WIRE_MAC_LEN], char *reason, size_t rlen);
int wire_dec_welcome(const uint8_t *body, size_t len, wire_welcome_t *m, char *reason, size_t rlen);
int wire_dec_ack(const uint8_t *body, size_t len, uint64_t *durable_seq, char *reason, size_t rlen);
int wire_dec_error(const uint8_t *body, size_t len, wire_error_t *m, char *reason, size_t rlen);
int wire_dec_tag_request(const uint8_t *body, size_t len, uint8_t *tag_kind, uint64_t *id,
                         char name[WIRE_MAX_NAME + 1], char *reason, size_t rlen);
int wire_dec_stop(const uint8_t *body, size_t len, wire_stop_t *m, char *reason, size_t rlen);
int wire_dec_resume(const uint8_t *body, size_t len, char text[WIRE_MAX_TEXT + 1], char *reason, size_t rlen);
int wire_dec_resync_request(const uint8_t *body, size_t len, wire_resync_request_t *m, char *reason, size_t rlen);
/* m->raw points into body afterwards: the sums are valid while body is. */
int wire_dec_resync_sums(const uint8_t *body, size_t len, wire_resync_sums_t *m, char *reason, size_t rlen);
int wire_dec_resync_ack(const uint8_t *body, size_t len, uint16_t *disk, uint16_t *frames, char *reason,
                        size_t rlen);
int wire_dec_group_prepare(const uint8_t *body, size_t len, wire_group_prepare_t *m, char *reason, size_t rlen);
int wire_dec_prepared(const uint8_t *body, size_t len, wire_prepared_t *m, char *reason, size_t rlen);
int wire_dec_group_commit(const uint8_t *body, size_t len, uint64_t *round, char *reason, size_t rlen);
int wire_dec_group_abort(const uint8_t *body, size_t len, uint64_t *round, char *reason, size_t rlen);
/*
 * Records, structure only: the header and every entry are checked as below
 * and entries[i].stored_data / stored_off are set, but nothing is
 * decompressed, no hash is verified and data stays NULL. For readers of
 * bodies that were fully checked before (the points stage reading the
 * journal); anything from the network goes through wire_dec_records.
 */
int wire_dec_records_entries(const uint8_t *body, size_t len, wire_records_t *m, char *reason, size_t rlen);

/*
 * Records: checks the header and every entry, decompresses compressed
 * writes into scratch (WIRE_MAX_BATCH_DATA bytes, caller-owned), and
 * verifies each write's XXH3 against its raw data. On 0, entries[i].data
 * points at the raw bytes (into scratch, or into body for raw entries) and
 * entries[i].stored_data at the bytes as sent.
 */
int wire_dec_records(const uint8_t *body, size_t len, wire_records_t *m, uint8_t *scratch, char *reason,
                     size_t rlen);

#endif
