/*
 * The agent's ordered stream: every record of every disk of the machine, in
 * the order they happened, numbered without gaps. Records are copied in and
 * kept until the server acknowledges them as durable, so a lost connection
 * loses nothing: the client resends from wherever the server's WELCOME says.
 *
 * Three positions split the stream:
 *
 *   acked  <  seq <= sent   sent, waiting for the server's ACK
 *   sent   <  seq <  next   appended, not sent yet (since the last WELCOME)
 *   next                    the sequence the next append gets
 *
 * Memory is bounded by max_bytes (data plus a fixed cost per record): a
 * producer asks agent_stream_has_room() and waits when it says no; acks make
 * room. Nothing is ever dropped to make room.
 *
 * Not thread-safe: one loop thread owns a stream.
 */
#ifndef TM_AGENT_STREAM_H
#define TM_AGENT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire/msg.h"
#include "wire/wire.h"

/* What one record costs against the bound besides its data: the list node and
 * its share of the batch bookkeeping. Keeps a flood of tiny records bounded. */
#define AGENT_REC_OVERHEAD 64u

/* The default bound of a stream's memory. */
#define AGENT_STREAM_DEFAULT_BYTES (64u << 20)

typedef struct agent_rec agent_rec_t;

typedef struct agent_stream {
    agent_rec_t *head;       /* oldest record held (acked + 1), NULL when empty */
    agent_rec_t *tail;       /* newest */
    agent_rec_t *cursor;     /* the next record to send, NULL when all were sent */
    uint64_t next_seq;       /* the sequence the next append gets */
    uint64_t acked_seq;      /* every record <= this is durable at the server */
    uint64_t sent_seq;       /* every record <= this was put in a batch since the last resume */
    size_t max_bytes;        /* the bound */
    size_t held_bytes;       /* data + overhead of every record held */
    size_t inflight_data;    /* data bytes of sent, unacked records */
    uint64_t count;          /* records held */
    uint64_t appended;       /* records appended since init (numbering-independent) */
    bool renumberable;       /* nothing was ever sent: held records may take the server's numbers */
    wire_entry_t *entries;   /* scratch for one batch, WIRE_MAX_BATCH_RECORDS */
} agent_stream_t;

/*
 * An empty stream whose first record will get first_seq (1 for a new
 * stream; a resume point otherwise) and that holds at most max_bytes (0: the
 * default). Returns 0, TM_EINVAL (first_seq 0) or -ENOMEM.
 */
int agent_stream_init(agent_stream_t *s, uint64_t first_seq, size_t max_bytes);
void agent_stream_free(agent_stream_t *s);

/* What a record of `data_len` bytes costs against the bound. */
size_t agent_stream_cost(size_t data_len);

/* True when a record with data_len bytes fits under the bound now. An empty
 * stream always has room, so one record larger than the bound cannot wedge it. */
bool agent_stream_has_room(const agent_stream_t *s, size_t data_len);

/*
 * Append a record; data (write bytes, or a tag's name; length bytes for a
 * write, strlen(name) for a tag) is copied. *seq (may be NULL) gets its
 * sequence. Returns 0, -EAGAIN when it does not fit (has_room said no;
 * nothing changed), TM_EINVAL for a record the protocol cannot carry
 * (unaligned, a write over WIRE_MAX_WRITE, a bad tag name, unknown kind), or
 * -ENOMEM. `force` appends even past the bound: for the few small records
 * the agent must not refuse (a tag the server asked for, a flush).
 */
int agent_stream_append(agent_stream_t *s, const wire_entry_t *rec, bool force, uint64_t *seq);

/* Shorthands for agent_stream_append(). */
int agent_stream_write(agent_stream_t *s, uint16_t disk, uint64_t offset, const void *data, uint32_t len,
                       uint64_t *seq);
int agent_stream_zero(agent_stream_t *s, uint16_t disk, uint64_t offset, uint32_t len, uint64_t *seq);
int agent_stream_trim(agent_stream_t *s, uint16_t disk, uint64_t offset, uint32_t len, uint64_t *seq);
int agent_stream_tag(agent_stream_t *s, uint8_t tag_kind, uint64_t id, const char *name, bool force,
                     uint64_t *seq);
int agent_stream_flush(agent_stream_t *s, bool force, uint64_t *seq);
/* Disk `disk`'s initial copy is complete: every record of it before this
 * one, applied to a zero disk, gives the whole disk. */
int agent_stream_synced(agent_stream_t *s, uint16_t disk, bool force, uint64_t *seq);
/* Disk `disk`'s resync begins: the appliance's copy of it is not
 * crash-consistent until its next SYNCED record. */
int agent_stream_resync(agent_stream_t *s, uint16_t disk, bool force, uint64_t *seq);

/*
 * Start over from the server's next_seq (a WELCOME): records below it are
 * durable there and are dropped; sending restarts at next_seq.
 *
 * Until the first batch was made, nothing of this stream has left the
 * process, so the first resume numbers the held records (if any) from
 * next_seq: a restarted agent continues the server's stream where it is.
 * After that the numbers are fixed, and the errors say the two sides
 * disagree: TM_EINVAL when next_seq is past the last sequence handed out
 * (the server holds records this agent never sent), TM_ENOTFOUND when it is
 * below records already dropped as acked (the server lost acknowledged
 * data). An error leaves the stream unchanged.
 */
int agent_stream_resume(agent_stream_t *s, uint64_t next_seq);

/*
 * Every record <= durable_seq is durable: drop them. Returns the number of
 * records dropped (0 for an old ack), or TM_EINVAL for an ack of a record
 * that was never sent.
 */
int64_t agent_stream_ack(agent_stream_t *s, uint64_t durable_seq);

/*
 * Encode the next RECORDS frame into b (appended): consecutive records from
 * the send cursor, at most WIRE_MAX_BATCH_RECORDS of them and max_data data
 * bytes, and only while the data of sent, unacked records stays within
 * window (a record larger than max_data or window still goes alone when
 * nothing else is in flight, so nothing can wedge). lz4 when compress.
 * Returns the number of records encoded, 0 when there is nothing to send or
 * the window is full, or -ENOMEM.
 */
int agent_stream_next_batch(agent_stream_t *s, wire_buf_t *b, uint32_t max_data, uint32_t window, bool compress);

/* How many of the records appended since init are acknowledged. Unlike
 * sequence numbers this does not move when the first resume renumbers, so
 * a waiter (a flush) can remember agent_stream_t.appended and compare. */
static inline uint64_t agent_stream_acked_count(const agent_stream_t *s)
{
    return s->appended - (s->next_seq - 1 - s->acked_seq);
}

/* True when every record appended so far is acknowledged. */
static inline bool agent_stream_all_acked(const agent_stream_t *s)
{
    return s->acked_seq + 1 == s->next_seq;
}

/* True when there are appended records not yet sent. */
static inline bool agent_stream_has_unsent(const agent_stream_t *s)
{
    return s->cursor != NULL;
}

#endif
