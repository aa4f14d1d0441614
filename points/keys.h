/*
 * The index's RocksDB layout, version 1: key and value encodings, no I/O.
 * docs/index-format.md is the prose version; change both together and bump
 * PTS_LAYOUT_VERSION with any change. Keys are big-endian so that RocksDB's
 * bytewise order is numeric order; values are little-endian like every
 * other format of Tidemark.
 *
 *   key                                      value
 *   "V"                                      u32 layout version, u64 journal id
 *   "P"                                      u64 next LSN to process, u64 time_ns of the record before it,
 *                                            u64 segment, u64 offset: where that next record starts
 *   "I"                                      u32 the next machine id to give
 *   "N" name                                 u32 machine id
 *   "M" u32 mid                              machine record (below)
 *   "X" u32 mid u16 disk u64 chunk u64 seq   extent piece (below)
 *   "C" u32 mid u64 seq                      point (below)
 *   "S"                                      empty: rewritten with sync when the index must be durable
 *   "R" u32 mid u64 begin                    u64 end: positions begin..end-1 of the stream are not
 *                                            crash-consistent (initial copy, resync); end is
 *   "T" u32 mid u64 recv_ns u64 seq          the batch ending at seq, received at recv_ns: u64 its first seq,
 *                                            u64 LSN, u64 segment, u64 offset of its journal record
 *   "F" u32 mid                              failover: u16 version 1, u8 state (1 failed over,
 *                                            2 committed), u8 0, u32 0, u64 seq (the point served;
 *                                            0 once committed), u64 time_ns (failed over, or committed)
 *
 * An extent is one write, zero or trim of a machine's stream, cut into
 * pieces at PTS_CHUNK boundaries so that the extents touching a byte range
 * are found by a seek per chunk. Piece value (72 bytes):
 *   u8 kind (1 write, 2 zero, 3 trim), u8 codec (writes: 0 raw, 1 lz4),
 *   u16 0, u32 piece length, u64 piece offset (on the disk),
 *   u64 write offset, u32 write length (the whole record's range),
 *   u32 data_off (where the write's stored bytes start in the journal
 *   record's payload), u32 stored (their length), u32 0,
 *   u64 lsn, u64 segment, u64 offset in segment (the journal record),
 *   u64 hash (XXH3-64 of the write's raw bytes; 0 for zero and trim)
 *
 * Machine record: u16 version 1, u8 name length, name, u16 ndisks,
 *   ndisks x {u8 name length, name, u64 size}, u64 synced disk mask,
 *   u64 seq (last processed), u64 seq_ns, u64 first_seq (horizon),
 *   u64 latest point seq (0: none), u64 base_seq (the replica base holds
 *   the disks as of it), u64 resync disk mask, u64 unsafe_since (the seq
 *   where the open window of inconsistency began; 0: none open)
 *
 * Point: u8 kind (1 crash, 2 app), u8 tag name length, u16 flags (bit 0:
 *   multi-VM, part of a group point), u32 0, u64 time_ns, u64 tag id, tag name
 *
 * "G" u8 len, group name, u64 round -> group point: u8 kind (1 crash, 2 app),
 *   u8 0, u16 members, u32 0, u64 time_ns, members x {u8 name length, name,
 *   u64 seq}
 */
#ifndef TM_POINTS_KEYS_H
#define TM_POINTS_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal/journal.h"
#include "points/points.h"

#define PTS_LAYOUT_VERSION 1u
#define PTS_CHUNK_SHIFT 20u
#define PTS_CHUNK (UINT64_C(1) << PTS_CHUNK_SHIFT)

#define PTS_K_VERSION 'V'
#define PTS_K_POS 'P'
#define PTS_K_NEXT_ID 'I'
#define PTS_K_NAME 'N'
#define PTS_K_MACHINE 'M'
#define PTS_K_EXTENT 'X'
#define PTS_K_POINT 'C'
#define PTS_K_TIME 'T'
#define PTS_K_UNSAFE 'R'
#define PTS_K_FAILOVER 'F'
#define PTS_K_GROUP 'G'
#define PTS_POINT_F_MULTIVM 1u
#define PTS_K_SYNC 'S' /* empty; written with sync to make the index durable */

#define PTS_EXTENT_KEY_LEN 23u  /* 1 + 4 + 2 + 8 + 8 */
#define PTS_EXTENT_VAL_LEN 72u
#define PTS_POINT_KEY_LEN 13u   /* 1 + 4 + 8 */
#define PTS_TIME_KEY_LEN 21u    /* 1 + 4 + 8 + 8 */
#define PTS_MACHINE_KEY_LEN 5u
#define PTS_MACHINE_VAL_MAX (2u + 1u + WIRE_MAX_NAME + 2u + WIRE_MAX_DISKS * (1u + WIRE_MAX_NAME + 8u) + 8u * 8u)
#define PTS_TIME_VAL_LEN 32u
#define PTS_FAILOVER_VAL_LEN 24u
#define PTS_POINT_VAL_MAX (24u + WIRE_MAX_NAME)

typedef enum { PTS_EXT_WRITE = 1, PTS_EXT_ZERO = 2, PTS_EXT_TRIM = 3 } pts_ext_kind_t;

typedef struct pts_extent {
    uint64_t seq;
    uint8_t kind;      /* pts_ext_kind_t */
    uint8_t codec;
    uint64_t off;      /* the piece: disk offset and length */
    uint32_t len;
    uint64_t w_off;    /* the whole write */
    uint32_t w_len;
    uint32_t data_off; /* stored bytes: payload offset and length */
    uint32_t stored;
    uint64_t lsn;
    jnl_pos_t pos;
    uint64_t hash;
} pts_extent_t;

/* The machine record as stored; the in-memory state adds nothing more. */
typedef struct pts_mrec {
    pts_machine_t m;
    uint64_t synced_mask;
    uint64_t latest_seq; /* 0: no point yet */
    uint64_t resync_mask;  /* disks between their RESYNC and SYNCED records */
    uint64_t unsafe_since; /* the seq where the current window of inconsistency began; 0: consistent */
} pts_mrec_t;

void pts_key_extent(uint8_t k[PTS_EXTENT_KEY_LEN], uint32_t mid, uint16_t disk, uint64_t chunk, uint64_t seq);
/* 0, or TM_ECORRUPT when the key is not an extent key. */
int pts_key_extent_parse(const uint8_t *k, size_t len, uint32_t *mid, uint16_t *disk, uint64_t *chunk, uint64_t *seq);
void pts_val_extent(uint8_t v[PTS_EXTENT_VAL_LEN], const pts_extent_t *e);
int pts_val_extent_parse(const uint8_t *v, size_t len, uint64_t seq, pts_extent_t *e);

void pts_key_point(uint8_t k[PTS_POINT_KEY_LEN], uint32_t mid, uint64_t seq);
/* A window of inconsistency from begin (same layout as a point key). */
void pts_key_unsafe(uint8_t k[PTS_POINT_KEY_LEN], uint32_t mid, uint64_t begin);
int pts_key_point_parse(const uint8_t *k, size_t len, uint32_t *mid, uint64_t *seq);
size_t pts_val_point(uint8_t v[PTS_POINT_VAL_MAX], const pts_point_t *pt);
int pts_val_point_parse(const uint8_t *v, size_t len, uint64_t seq, pts_point_t *pt);

/* A batch as its time key describes it. */
typedef struct pts_tbatch {
    uint64_t recv_ns;
    uint64_t first_seq, last_seq;
    uint64_t lsn;
    jnl_pos_t pos;
} pts_tbatch_t;

void pts_key_time(uint8_t k[PTS_TIME_KEY_LEN], uint32_t mid, uint64_t ns, uint64_t seq);
void pts_val_time(uint8_t v[PTS_TIME_VAL_LEN], const pts_tbatch_t *b);
/* Key and value together. 0 or TM_ECORRUPT. */
int pts_time_parse(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, uint32_t *mid, pts_tbatch_t *b);
int pts_key_time_parse(const uint8_t *k, size_t len, uint32_t *mid, uint64_t *ns, uint64_t *seq);

void pts_key_machine(uint8_t k[PTS_MACHINE_KEY_LEN], uint32_t mid);
size_t pts_val_machine(uint8_t v[PTS_MACHINE_VAL_MAX], const pts_mrec_t *r);
int pts_val_machine_parse(const uint8_t *v, size_t len, pts_mrec_t *r);

/* A prefix: the tag byte and a big-endian mid; n = 5. */
void pts_key_prefix(uint8_t k[5], char tag, uint32_t mid);

#endif
