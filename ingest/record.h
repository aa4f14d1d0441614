/*
 * What ingest writes into the journal, payload format version 1
 * (docs/ingest-records.md is the prose version; change both together and
 * bump INGEST_REC_VERSION with any change). Encoders and decoders only, no
 * I/O: the points stage and the tests read these back with the same code.
 *
 * Journal record type 1, a stream batch (appended with journal flags 0):
 *
 *   off  size  field
 *     0     2  version   INGEST_REC_VERSION
 *     2     2  flags     0
 *     4     8  recv_ns   wall clock when the server took the frame
 *    12     1  mlen      length of the machine name
 *    13  mlen  machine   the name, no terminator
 *     …     …  body      the agent's RECORDS frame body, verbatim (its data
 *                        still lz4-compressed if the agent sent it so)
 *
 * Journal record type 2, a machine's disks (written on its first hello):
 *
 *     0     2  version   INGEST_REC_VERSION
 *     2     1  mlen, then the machine name
 *     …     2  ndisks    1..WIRE_MAX_DISKS
 *     …        ndisks × { u8 len, name, u64 size }
 *
 * All integers little-endian.
 */
#ifndef TM_INGEST_RECORD_H
#define TM_INGEST_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "wire/msg.h"

#define INGEST_REC_BATCH 1u
#define INGEST_REC_DISKS 2u
#define INGEST_REC_VERSION 1u

/* The largest batch header: fixed fields and the longest machine name. */
#define INGEST_BATCH_HDR_MAX (13u + WIRE_MAX_NAME)
/* The largest disks record. */
#define INGEST_DISKS_MAX (2u + 1u + WIRE_MAX_NAME + 2u + WIRE_MAX_DISKS * (1u + WIRE_MAX_NAME + 8u))

/* Write a batch header into out (INGEST_BATCH_HDR_MAX bytes); returns its
 * length. machine must be a valid name (wire_name_ok). */
size_t ingest_rec_batch_header(uint8_t *out, uint64_t recv_ns, const char *machine);

typedef struct ingest_batch_rec {
    uint16_t version;
    uint16_t flags;
    uint64_t recv_ns;
    char machine[WIRE_MAX_NAME + 1];
    const uint8_t *body; /* the RECORDS body, inside the payload */
    size_t body_len;
    uint64_t first_seq;  /* read from the body's header */
    uint16_t count;
} ingest_batch_rec_t;

/* Parse a type-1 payload. 0, TM_EVERSION (another version or flags),
 * TM_ECORRUPT (truncated, bad name, a body shorter than its header). The body
 * itself is not decoded: use wire_dec_records on out->body for the entries. */
int ingest_rec_batch_parse(const uint8_t *p, size_t len, ingest_batch_rec_t *out);

/* The disks that the batch's SYNCED records name: bit d of *mask for disk d.
 * Reads only the entries (no decompression, no hashes: the body was checked
 * before it was journaled). 0, or TM_ECORRUPT when the entries run past the
 * body or a SYNCED names a disk past WIRE_MAX_DISKS. */
int ingest_rec_batch_synced(const ingest_batch_rec_t *b, uint64_t *mask);

/* What the batch does to its disks' resyncs, in stream order: bit d of
 * *open when disk d's last RESYNC/SYNCED record in it is a RESYNC (the
 * resync is open after the batch), of *close when it is a SYNCED (closed
 * after it; also the end of an initial copy). Entries only, like
 * ingest_rec_batch_synced. 0 or TM_ECORRUPT. */
int ingest_rec_batch_resync(const ingest_batch_rec_t *b, uint64_t *open, uint64_t *close);

/* Write a disks record into out (INGEST_DISKS_MAX bytes); returns its length. */
size_t ingest_rec_disks_encode(uint8_t *out, const char *machine, const wire_disk_t *disks, uint16_t ndisks);

/* Parse a type-2 payload into machine, disks (WIRE_MAX_DISKS entries) and
 * *ndisks. 0, TM_EVERSION or TM_ECORRUPT. */
int ingest_rec_disks_parse(const uint8_t *p, size_t len, char machine[WIRE_MAX_NAME + 1], wire_disk_t *disks,
                           uint16_t *ndisks);

#endif
