/*
 * The agent's side of a resync (docs/agent-protocol.md, "Resync"): the
 * state of each disk's resync, the map of blocks written since it began,
 * and the block sums the appliance sends, handed out as items of a few
 * blocks for the producer to compare with its image in stream order.
 *
 * A disk's resync: RESYNC appended (agent_resync_want) → its turn in a
 * session whose WELCOME says the appliance holds the disk: RESYNC_REQUEST
 * from the first block not compared yet → RESYNC_SUMS frames, each taken
 * into items (agent_resync_next) and acknowledged → the producer compares
 * each item's blocks when it is the head of its append queue, appends the
 * differing ones and, after the last, SYNCED → acknowledged: done. One disk
 * at a time. A lost session costs the sums not yet taken: the next WELCOME
 * asks again from where the items stopped.
 *
 * Why comparing at the head of the queue is right, and what the map is
 * for: tap.c, "The resync".
 *
 * Not thread-safe: the agent's loop thread.
 */
#ifndef TM_AGENT_RESYNC_H
#define TM_AGENT_RESYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/client.h"
#include "wire/msg.h"

#define AGENT_RESYNC_BLOCK (64u << 10)     /* the block size, unless the disk is too big for the map */
#define AGENT_RESYNC_MAP_BITS (32u << 20)  /* blocks a map holds (4 MiB); bigger disks get bigger blocks */
#define AGENT_RESYNC_ITEM_BYTES WIRE_MAX_WRITE /* disk bytes compared per item */
#define AGENT_RESYNC_ITEM_BLOCKS (AGENT_RESYNC_ITEM_BYTES / WIRE_RESYNC_MIN_BLOCK)

typedef enum {
    AGENT_RS_OFF,       /* nothing to do: a clean start, a disk being copied whole, or done */
    AGENT_RS_WAITING,   /* RESYNC appended; waits for a session that says the appliance holds the disk */
    AGENT_RS_RUNNING,   /* asked in this session: sums come in and are handed out */
    AGENT_RS_FINISHING, /* every block handed out; the producer appends SYNCED after the last */
    AGENT_RS_QUEUED,    /* SYNCED appended: waits for its ACK */
} agent_rs_state_t;

typedef struct agent_rs_frame agent_rs_frame_t;

typedef struct agent_rs_disk {
    agent_rs_state_t state;
    uint64_t size;
    uint32_t block;
    uint64_t nblocks;
    uint8_t *dirty;        /* bit per block: a record of this process touched it */
    bool synced_here;      /* the last WELCOME said the appliance holds the disk */
    uint64_t next_block;   /* the first block not handed out yet */
    uint64_t expect_block; /* the first block of the next RESYNC_SUMS of this session */
    agent_rs_frame_t *frames[WIRE_RESYNC_WINDOW];
    unsigned nframes;
    uint64_t differed, sent_bytes; /* blocks found different, their bytes appended */
    uint64_t target;       /* agent_stream_acked_count that covers SYNCED */
} agent_rs_disk_t;

typedef struct agent_resync {
    agent_client_t *client;
    const char *const *names; /* the disks', for messages */
    unsigned ndisks;
    agent_rs_disk_t *d;
    int active;            /* the disk asked for in this session, -1 none */
} agent_resync_t;

/* One item: blocks [first_block, first_block + count) of a disk, the bytes
 * [off, off + len) (the last block may be short), and their sums. */
typedef struct agent_rs_item {
    uint16_t disk;
    uint32_t block;
    uint64_t first_block;
    uint32_t count;
    uint64_t off, len;
    bool last;             /* the disk's last block: SYNCED follows */
    uint64_t sums[AGENT_RESYNC_ITEM_BLOCKS];
} agent_rs_item_t;

int agent_resync_init(agent_resync_t *rs, unsigned ndisks, const uint64_t *sizes);
void agent_resync_free(agent_resync_t *rs);

/* Keep disk d's map of written blocks from now on (from the start: whether
 * it needs a resync is known only at the first WELCOME). 0 or -ENOMEM. */
int agent_resync_track(agent_resync_t *rs, uint16_t d);

/* Disk d needs a resync (its RESYNC record is appended by the caller); the
 * marks made since tracking began stay. 0 or -ENOMEM. */
int agent_resync_want(agent_resync_t *rs, uint16_t d);

/* A record of disk d over [off, off + len) was appended: its blocks are
 * sent whole, whatever their sums say. */
void agent_resync_mark(agent_resync_t *rs, uint16_t d, uint64_t off, uint64_t len);
bool agent_resync_dirty(const agent_resync_t *rs, uint16_t d, uint64_t block);

/* A WELCOME: what a lost session had asked for is asked again (from the
 * first block not handed out). A disk the WELCOME says the appliance does
 * not hold is copied whole instead: its resync is dropped (the copy's
 * SYNCED ends it). Maps of disks with nothing to do are freed. */
void agent_resync_welcome(agent_resync_t *rs, const wire_welcome_t *w);

/* Ask for the next disk's sums when none is asked for (a live session). */
void agent_resync_kick(agent_resync_t *rs);

/* RESYNC_SUMS arrived: 0 (kept), or -1 with why (the server broke the
 * protocol: the caller aborts the session). */
int agent_resync_on_sums(agent_resync_t *rs, const wire_resync_sums_t *m, char *why, size_t wlen);

/* Take the next item (true) from the sums that came in; frames used up are
 * acknowledged to the server. */
bool agent_resync_next(agent_resync_t *rs, agent_rs_item_t *it);

/* The item's blocks are compared and appended (differed of them, bytes of
 * data); for the last one SYNCED was appended too and acked_target is what
 * covers it. */
void agent_resync_item_done(agent_resync_t *rs, const agent_rs_item_t *it, uint64_t differed, uint64_t bytes,
                            uint64_t acked_target);

/* The item could not be compared (a read failed): its disk goes back to
 * waiting from the item's first block; the caller drops the session so the
 * next one asks again. */
void agent_resync_retry(agent_resync_t *rs, const agent_rs_item_t *it);

/* An ACK: resyncs whose SYNCED it covers are done (true if one finished). */
bool agent_resync_acked(agent_resync_t *rs, uint64_t acked_count);

/* Nothing to do for disk d (no resync or done). */
static inline bool agent_resync_idle(const agent_resync_t *rs, uint16_t d)
{
    return rs->d[d].state == AGENT_RS_OFF;
}

#endif
