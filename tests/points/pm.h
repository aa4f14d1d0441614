/*
 * A seeded workload for the points and target tests, written straight into
 * a journal the way ingest writes it (type-2 disks record, type-1 batches),
 * and an independent reference model: the list of operations, from which
 * any disk at any stream sequence is rebuilt by applying them in order.
 */
#ifndef PM_H
#define PM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal/journal.h"
#include "support/tmt.h"
#include "wire/msg.h"

#define PM_MAX_OPS 20000

typedef struct pm_op {
    uint8_t kind; /* WIRE_R_* */
    uint8_t tag_kind;
    uint16_t disk;
    uint64_t off;
    uint32_t len;
    uint64_t data_id; /* writes: content = tmt_fill(seed, data_id) */
    bool compressible;
    char tag[WIRE_MAX_NAME + 1];
} pm_op_t;

typedef struct pm_batch {
    uint64_t first_seq, last_seq;
    uint64_t recv_ns;
    uint64_t lsn;
} pm_batch_t;

typedef struct pm {
    uint64_t seed;
    tmt_rng_t rng;
    char machine[WIRE_MAX_NAME + 1];
    unsigned ndisks;
    wire_disk_t disks[4];
    pm_op_t *ops;       /* ops[seq - 1] */
    size_t nops;
    pm_batch_t *batches;
    size_t nbatches;
    uint64_t next_ns;   /* recv_ns of the next batch */
    uint64_t step_ns;   /* between batches */
    bool no_synced;     /* the first batch does not start with the disks' SYNCED */
} pm_t;

/* A machine with three disks of awkward sizes; batches step_ns apart from t0. */
void pm_init(pm_t *m, uint64_t seed, const char *machine, uint64_t t0_ns, uint64_t step_ns);
void pm_free(pm_t *m);

/* Append the machine's disks record. */
void pm_append_disks(pm_t *m, jnl_t *j);
/* Generate and append one batch of 1..max_entries records (writes, zeroes,
 * trims, now and then an app tag). */
void pm_append_batch(pm_t *m, jnl_t *j, unsigned max_entries);

/* Append a batch of one SYNCED or RESYNC record for disk. */
void pm_append_marker(pm_t *m, jnl_t *j, uint8_t kind, uint16_t disk);

/* Append a batch of one tag record; its stream sequence. */
uint64_t pm_append_tag(pm_t *m, jnl_t *j, uint8_t tag_kind, uint64_t id, const char *name);

/* Flip one bit in the middle of the stored bytes of the write at seq, in
 * the journal's (one) segment file under jdir, as bit rot would, through
 * the index of the points stage p (which must have processed it). The
 * write must be stored raw: a bit flipped in an lz4 block may decode to
 * the same bytes. */
struct pts;
void pm_flip_stored_bit(struct pts *p, const char *jdir, const pm_t *m, uint64_t seq);

/* The disk as it was at seq (0: never written), into out (disk size bytes). */
void pm_disk_at(const pm_t *m, unsigned disk, uint64_t seq, uint8_t *out);

/* The recv_ns of the batch holding seq. */
uint64_t pm_time_of(const pm_t *m, uint64_t seq);

#endif
