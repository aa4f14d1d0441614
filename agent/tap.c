/*
 * The tap agent: an NBD backend that wraps the file backend.
 *
 * A write-like request (WRITE, TRIM, WRITE_ZEROES) goes through three stages:
 *   1. admission: it waits in `room` (FIFO) until the stream has room for
 *      what it will append (backpressure: nothing is dropped or grown);
 *   2. the local apply on the file backend's thread pool;
 *   3. the append queue, in completion order: its records are appended to
 *      the stream, then the client gets its reply (a FUA write waits for the
 *      server's ACK too).
 * The append queue is strictly ordered. A request that is not 512-aligned
 * is streamed as the aligned range read back from the file, and the queue
 * waits for that read: any write completed later is appended after it, and
 * any write the read already saw is appended again after it, so the
 * appliance ends with what the file holds.
 *
 * A FLUSH enters the append queue too (so its flush record follows every
 * write completed before it), runs fdatasync on the file at once, and is
 * answered when both the sync is done and the server's ACK covers its flush
 * record.
 *
 * The initial copy. A WELCOME that names a disk WIRE_DISK_NEW (the
 * appliance holds no full copy of it) starts a copy of that disk: chunks of
 * COPY_CHUNK bytes, in order, each one read from the file and appended as one
 * WRITE record; a chunk that reads as all zeros is skipped (the appliance's
 * disk starts all zero); after the last chunk, a SYNCED record. Disks are
 * copied one after another.
 *
 * A copy chunk is an item of the same strictly ordered append queue as the
 * clients' writes, and its read of the file happens only when it is the
 * head of that queue; the queue waits for the read. So for a live write W
 * and a chunk C of the same region: if W reached the queue before C's read,
 * W's records are appended first and C, read after W was applied, carries
 * W's bytes too; otherwise W was applied during or after the read and its
 * records are appended after C's. Either way the last record to touch any
 * byte carries what the file holds, and the two can never be reordered. A
 * skipped (zero) chunk is the same case with nothing appended: every byte
 * the appliance got non-zero before it was overwritten by a write appended
 * before or after it, exactly as on the file.
 *
 * The copy respects the stream's bound strictly (a chunk is queued only
 * when the stream has room for it and no client write waits for room), and
 * only one chunk is in the queue at a time: live writes keep flowing between
 * chunks. A lost connection costs nothing: the stream keeps every record
 * until it is acknowledged and resends it, and the copy goes on. Only a
 * restarted agent copies again, from the beginning, because the WELCOME
 * still says WIRE_DISK_NEW until the SYNCED record is durable.
 *
 * The resync. The stream lives in memory: a tap agent that was killed
 * lost the writes it had applied and not yet seen acknowledged, and the
 * appliance's copy of the disk silently lacks them. So an agent that cannot
 * show it stopped cleanly (agent/clean.h: no marker beside the image, or
 * one whose sequence the WELCOME contradicts) appends a RESYNC record for
 * the disk before anything else of its own, and once a WELCOME says the
 * appliance holds the disk it asks for the disk's block sums
 * (agent/resync.h). The sums come a frame at a time; each item of a few
 * blocks goes into the same ordered append queue as a copy chunk would, and
 * only when it is the head is its range read from the file and each block
 * compared with the appliance's sum: a block that differs is appended as a
 * write, an equal one is skipped; after the disk's last block, SYNCED.
 *
 * Why that is right. The sums are of the appliance's copy at some sequence
 * P, at least the durable end of the WELCOME, and an item is appended at
 * sequence Q > P (its sums came after P was durable, so after every record
 * up to P was appended). For a block b: sending the file's bytes is always
 * right, by the copy's argument above (read at the head of the queue, the
 * last record touching a byte carries what the file holds). Skipping is
 * right when the appliance holds at Q what it held at P, that is when no
 * record in (P, Q) touched b, and the file equals it. The agent cannot tell
 * which of its records are after P, so it keeps a map of every block any
 * of its own writes, zeroes and trims touched since it started
 * (agent_resync_mark, when the record is appended) and always sends those:
 * a few blocks more than needed, never one too few. Live writes go on
 * meanwhile, in stream order, and are never held.
 *
 * The STOP. Before a planned failover the appliance stops the machine:
 * from the STOP on, a new WRITE, TRIM or WRITE_ZEROES gets EPERM at once.
 * Refused rather than held: a held write would have to go somewhere after
 * the failover, and the client must learn that it did not happen. Every
 * request accepted before the STOP (waiting for room, on the file, in the
 * append queue, or held by an app tag's quiesce) completes as usual, and
 * once all of them are in the stream, and no disk's initial copy or resync
 * is half sent (both go on while stopped), the final tag is appended: a
 * crash tag with the STOP's id and name (agent_quiesce_stop, through the
 * same drain as an app tag's). The appliance's copy at that tag is the
 * image. FLUSH is never refused. A RESUME takes writes again; a STOP whose
 * tag is not appended yet is dropped then.
 */
#include "agent/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <uv.h>

#include "agent/clean.h"
#include "agent/client.h"
#include "agent/quiesce.h"
#include "agent/resync.h"
#include "agent/stream.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "nbd/nbd.h"
#include "nbd/nbd_file.h"

#define ZERO_CHUNK (1u << 30) /* largest zero/trim record the tap makes */
#define COPY_CHUNK WIRE_MAX_WRITE /* initial copy: bytes read (and sent as one write) at a time */

typedef enum { PC_BUF, PC_READ, PC_ZERO, PC_TRIM, PC_FLUSH, PC_COPY } piece_kind_t;

typedef struct piece {
    piece_kind_t kind;
    uint64_t off;
    uint64_t len;
} piece_t;

typedef struct tap tap_t;

typedef enum { W_NONE, W_HELD, W_ROOM, W_LOCAL, W_QUEUE, W_ACK } tap_where_t;

typedef struct tap_io {
    struct tap_io *next;
    tap_t *tap;
    nbd_io_t *io;
    tap_where_t where;
    uint16_t disk;
    size_t reserve;     /* bytes reserved against the stream's bound */
    piece_t pieces[3];
    unsigned npieces, piece;
    uint64_t pos;       /* within the current piece */
    nbd_io_t rio;       /* a read-back */
    uint8_t *rbuf;
    bool reading, read_ready;
    int status;         /* a failure to report to the client */
    bool local_done;    /* the file part (sync for a flush) finished */
    bool appended;      /* every record is in the stream */
    uint64_t target;    /* acked_count that covers it (flush, FUA) */
    bool copy;          /* an initial copy chunk or a resync item: no io, pieces[0] is PC_COPY */
    agent_rs_item_t *rsi; /* a resync item (with copy): its blocks and sums */
    uint64_t rs_differed, rs_bytes;
    uv_fs_t fsreq;      /* its read */
} tap_io_t;

/* A disk's initial copy. */
typedef enum {
    CP_IDLE,    /* no WELCOME asked for it */
    CP_WANTED,  /* asked for; waits for its turn */
    CP_RUNNING, /* chunks going into the queue */
    CP_QUEUED,  /* SYNCED appended; waits for the server's ACK */
    CP_DONE,    /* the appliance holds it (acked, or the WELCOME said so) */
    CP_FAILED,  /* a read failed; the next WELCOME that asks starts over */
} copy_state_t;

typedef struct tap_copy {
    int fd;              /* the image, read-only, for the copy's reads */
    uint64_t size;
    copy_state_t state;
    uint64_t pos;        /* the next chunk's offset */
    uint64_t sent, skipped; /* chunks appended, chunks skipped as zeros */
    uint64_t target;     /* acked_count that covers the SYNCED record */
    bool clean;          /* a clean-shutdown marker was taken at start ... */
    uint64_t clean_seq;  /* ... saying the appliance held the stream up to here */
} tap_copy_t;

struct tap {
    uv_loop_t loop;
    agent_stream_t stream;
    agent_client_t *client;
    nbd_server_t *srv;
    nbd_file_backend_t *fb;
    const agent_tap_disk_t *disks;
    unsigned ndisks;
    tap_io_t *room_head, *room_tail;
    tap_io_t *queue_head, *queue_tail;
    /* an app tag's quiesce: new write-likes wait in `held` (before admission)
     * until it is done; `local` counts those on the file, for the drain */
    agent_quiesce_t *q;
    bool holding;
    tap_io_t *held_head, *held_tail;
    unsigned nheld;
    unsigned local;
    tap_io_t *ack_head;
    size_t reserved;
    /* STOP from the appliance (or a shutdown): new write-likes are refused
     * with EPERM; the ones accepted before go on (tap.c, "The STOP") */
    bool stopped;
    char stop_reason[WIRE_MAX_TEXT + 1];
    uint64_t refused;           /* write-likes refused since the STOP */
    bool shutting_down;
    bool finishing;
    int signals;
    uv_signal_t sigint, sigterm;
    int exit_code;
    /* the initial copy */
    tap_copy_t *copy;           /* ndisks */
    bool copy_out;              /* a chunk is in the queue */
    uint64_t copy_rate;         /* bytes/s read by the copy; 0 unlimited */
    uint64_t copy_next_ms;      /* the rate allows the next chunk then */
    uv_timer_t copy_timer;
    bool copy_timer_init;
    /* the resync (and its names for messages) */
    agent_resync_t rs;
    const char **names;
    bool welcomed;              /* a WELCOME came in this process */
    const char *machine;
};

/* The file backend's exports carry no pointer of ours, so requests find the
 * tap here: one tap runs per process (agent_tap_run). */
static tap_t *tap_self;

static void tap_drain(tap_t *t);
static void tap_admit(tap_t *t);
static void tap_check_exit(tap_t *t);
static void tap_close_quiesce(tap_t *t);
static void tap_copy_pump(tap_t *t);
static bool tap_copy_step(tap_t *t, tap_io_t *x);
static void tap_copy_chunk_done(tap_t *t, tap_io_t *x);
static void tap_resync_pump(tap_t *t);
static bool tap_resync_step(tap_t *t, tap_io_t *x);
static void tap_resync_item_done(tap_t *t, tap_io_t *x);

static void list_push(tap_io_t **head, tap_io_t **tail, tap_io_t *x)
{
    x->next = NULL;
    if (*tail)
        (*tail)->next = x;
    else
        *head = x;
    *tail = x;
}

static bool list_remove(tap_io_t **head, tap_io_t **tail, tap_io_t *x)
{
    tap_io_t *prev = NULL;
    for (tap_io_t *p = *head; p; prev = p, p = p->next) {
        if (p != x)
            continue;
        if (prev)
            prev->next = p->next;
        else
            *head = p->next;
        if (tail && *tail == p)
            *tail = prev;
        return true;
    }
    return false;
}

static uint16_t tap_disk_of(tap_t *t, void *export)
{
    const char *name = nbd_file_export_name(export);
    for (unsigned i = 0; i < t->ndisks; i++)
        if (strcmp(t->disks[i].name, name) == 0)
            return (uint16_t)i;
    return 0;
}

/* Reply to the client and forget the request. */
static void tap_complete(tap_io_t *x, int status)
{
    nbd_io_t *io = x->io;
    tap_t *t = x->tap;
    tm_free(x->rbuf);
    tm_free(x);
    io->data = NULL;
    nbd_io_done(io, status);
    tap_check_exit(t);
}

/* ---- the nbd backend --------------------------------------------------------- */

static void tap_open(void *backend, nbd_open_t *op)
{
    tap_t *t = backend;
    nbd_file_ops.open(t->fb, op);
}

static void tap_list(void *backend, nbd_list_t *op)
{
    tap_t *t = backend;
    nbd_file_ops.list(t->fb, op);
}

static void tap_read(nbd_io_t *io)
{
    nbd_file_ops.read(io);
}

static void tap_release(void *export)
{
    nbd_file_ops.release(export);
}

static void tap_on_local(nbd_io_t *io, int status, void *arg)
{
    tap_io_t *x = arg;
    (void)io;
    tap_t *t = x->tap;
    if (x->io->kind != NBD_IO_FLUSH)
        t->local--;
    if (x->io->kind == NBD_IO_FLUSH) {
        x->local_done = true;
        if (status != 0)
            x->status = status;
        if (x->appended && (x->status != 0 || agent_stream_acked_count(&t->stream) >= x->target)) {
            list_remove(&t->ack_head, NULL, x);
            tap_complete(x, x->status);
        }
        return;
    }
    x->local_done = true;
    if (status != 0) {
        /* Nothing changed on the file that the stream must follow: the
         * client learns of the failure, the reservation is given back. */
        t->reserved -= x->reserve;
        tap_complete(x, status);
        tap_admit(t);
        return;
    }
    x->where = W_QUEUE;
    list_push(&t->queue_head, &t->queue_tail, x);
    tap_drain(t);
}

/* Plan what a write-like request appends once applied. */
static void tap_plan(tap_io_t *x)
{
    nbd_io_t *io = x->io;
    uint64_t a = io->offset & ~(uint64_t)(WIRE_SECTOR - 1);
    uint64_t end = io->offset + io->length;
    uint64_t b = (end + WIRE_SECTOR - 1) & ~(uint64_t)(WIRE_SECTOR - 1);
    bool aligned = a == io->offset && b == end;
    x->npieces = 0;
    if (io->kind == NBD_IO_WRITE) {
        x->pieces[x->npieces++] = (piece_t){aligned ? PC_BUF : PC_READ, a, b - a};
        x->reserve = agent_stream_cost(b - a);
        return;
    }
    piece_kind_t k = io->kind == NBD_IO_ZERO ? PC_ZERO : PC_TRIM;
    uint64_t ia = (io->offset + WIRE_SECTOR - 1) & ~(uint64_t)(WIRE_SECTOR - 1); /* inner start */
    uint64_t ib = end & ~(uint64_t)(WIRE_SECTOR - 1);                              /* inner end */
    if (ia >= ib) { /* within one or two sectors: read them all back */
        x->pieces[x->npieces++] = (piece_t){PC_READ, a, b - a};
    } else {
        if (a < ia)
            x->pieces[x->npieces++] = (piece_t){PC_READ, a, ia - a};
        x->pieces[x->npieces++] = (piece_t){k, ia, ib - ia};
        if (ib < b)
            x->pieces[x->npieces++] = (piece_t){PC_READ, ib, b - ib};
    }
    size_t data = 0;
    for (unsigned i = 0; i < x->npieces; i++)
        if (x->pieces[i].kind == PC_READ)
            data += x->pieces[i].len;
    x->reserve = agent_stream_cost(data);
}

static void tap_submit_local(tap_io_t *x)
{
    x->where = W_LOCAL;
    x->tap->local++;
    nbd_file_submit(x->io->export, x->io, tap_on_local, x);
}

/* Room in the stream for a request that appends reserve bytes: within the
 * bound together with what is held and what admitted requests will
 * append; or nothing held and nothing admitted, so that a request larger
 * than the bound cannot wedge the queue (it passes the bound alone). */
static bool tap_room_for(const tap_t *t, size_t reserve)
{
    if (t->reserved == 0 && t->stream.count == 0)
        return true;
    return t->stream.held_bytes + agent_stream_cost(t->reserved + reserve) <= t->stream.max_bytes;
}

/* Start waiting requests while the stream has room for them. */
static void tap_admit(tap_t *t)
{
    while (t->room_head) {
        tap_io_t *x = t->room_head;
        if (!tap_room_for(t, x->reserve))
            return;
        t->room_head = x->next;
        if (!t->room_head)
            t->room_tail = NULL;
        t->reserved += x->reserve;
        tap_submit_local(x);
    }
    tap_copy_pump(t);
    tap_resync_pump(t);
    /* Whatever moved here may have finished an app tag's or a STOP's drain. */
    if (t->q && (t->holding || t->stopped))
        agent_quiesce_check(t->q);
}

static void tap_writelike(nbd_io_t *io)
{
    tap_t *t = tap_self;
    if (t->stopped) {
        /* Refused, not held: the final tag must come, and the client must
         * learn that its write did not happen (EPERM: "operation not
         * permitted", NBD_EPERM on the wire). */
        if (t->refused++ == 0 && !t->shutting_down)
            tm_warn("tap: refusing writes (EPERM): replication of this machine is stopped by the appliance (%s) "
                    "until it resumes", t->stop_reason[0] ? t->stop_reason : "no reason given");
        nbd_io_done(io, -EPERM);
        return;
    }
    tap_io_t *x = tm_calloc(1, sizeof *x);
    if (!x) {
        nbd_io_done(io, -ENOMEM);
        return;
    }
    x->tap = t;
    x->io = io;
    x->disk = tap_disk_of(t, io->export);
    io->data = x;
    tap_plan(x);
    /* A group round past its hold limit ends now (the timer may not have
     * run yet): this write is not held for it. */
    if (t->holding && t->q)
        agent_quiesce_poll(t->q);
    if (t->holding) {
        /* An app tag or a group round is being taken: this write comes
         * after it. Not even applied to the file yet, so the tag's point
         * cannot contain it. */
        x->where = W_HELD;
        list_push(&t->held_head, &t->held_tail, x);
        t->nheld++;
        uint64_t round = t->q ? agent_quiesce_round(t->q) : 0;
        if (round)
            tm_debug("tap: a write to %s at %llu is held until group round %llu is decided (%u held)",
                     t->disks[x->disk].name, (unsigned long long)io->offset, (unsigned long long)round, t->nheld);
        else
            tm_debug("tap: a write to %s at %llu is held until the app tag is in the stream (%u held)",
                     t->disks[x->disk].name, (unsigned long long)io->offset, t->nheld);
        return;
    }
    /* tap_admit's test, for the log: it waits behind others or for acks */
    if (t->room_head || !tap_room_for(t, x->reserve))
        tm_debug("tap: a write to %s at %llu waits for room in the stream", t->disks[x->disk].name,
                 (unsigned long long)io->offset);
    x->where = W_ROOM;
    list_push(&t->room_head, &t->room_tail, x);
    tap_admit(t);
}

static void tap_flush(nbd_io_t *io)
{
    tap_t *t = tap_self;
    tap_io_t *x = tm_calloc(1, sizeof *x);
    if (!x) {
        nbd_io_done(io, -ENOMEM);
        return;
    }
    x->tap = t;
    x->io = io;
    io->data = x;
    x->pieces[0] = (piece_t){PC_FLUSH, 0, 1};
    x->npieces = 1;
    x->where = W_QUEUE;
    /* Into the ordered queue first, so the flush record follows every write
     * that completed before it; the local sync runs meanwhile. */
    list_push(&t->queue_head, &t->queue_tail, x);
    nbd_file_submit(io->export, io, tap_on_local, x);
    tap_drain(t);
}

static void tap_cancel(nbd_io_t *io)
{
    if (io->kind == NBD_IO_READ) {
        nbd_file_ops.cancel(io);
        return;
    }
    tap_io_t *x = io->data;
    if (!x)
        return;
    tap_t *t = x->tap;
    if (x->where == W_ROOM && list_remove(&t->room_head, &t->room_tail, x)) {
        tap_complete(x, -ESHUTDOWN);
    } else if (x->where == W_HELD && list_remove(&t->held_head, &t->held_tail, x)) {
        t->nheld--;
        tap_complete(x, -ESHUTDOWN);
    } else if (x->where == W_ACK && x->local_done && list_remove(&t->ack_head, NULL, x)) {
        tap_complete(x, -ESHUTDOWN);
    }
    /* Anything on the file or in the append queue finishes by itself. */
}

/* ---- the append queue ---------------------------------------------------------- */

static void tap_on_readback(nbd_io_t *rio, int status, void *arg)
{
    tap_io_t *x = arg;
    (void)rio;
    x->reading = false;
    if (status != 0) {
        tm_error("tap: cannot read back %s at %llu for the stream: %s", x->tap->disks[x->disk].name,
                 (unsigned long long)x->rio.offset, tm_strerror(status));
        x->status = -EIO;
    }
    x->read_ready = true;
    tap_drain(x->tap);
}

/* Append what the head of the queue holds, in order, until a read-back must
 * be waited for. */
static void tap_drain(tap_t *t)
{
    while (t->queue_head) {
        tap_io_t *x = t->queue_head;
        if (x->copy) {
            if (!(x->rsi ? tap_resync_step(t, x) : tap_copy_step(t, x)))
                return; /* the queue waits for the chunk's read */
            t->queue_head = x->next;
            if (!t->queue_head)
                t->queue_tail = NULL;
            if (x->rsi)
                tap_resync_item_done(t, x);
            else
                tap_copy_chunk_done(t, x);
            continue;
        }
        if (x->reading)
            return;
        while (x->piece < x->npieces) {
            piece_t *p = &x->pieces[x->piece];
            if (x->pos >= p->len) {
                x->piece++;
                x->pos = 0;
                continue;
            }
            uint64_t left = p->len - x->pos;
            int rc = 0;
            switch (p->kind) {
            case PC_BUF: {
                uint32_t n = left > WIRE_MAX_WRITE ? WIRE_MAX_WRITE : (uint32_t)left;
                wire_entry_t e = {.kind = WIRE_R_WRITE, .disk = x->disk, .offset = p->off + x->pos, .length = n,
                                  .data = x->io->buf + (p->off + x->pos - x->io->offset)};
                rc = agent_stream_append(&t->stream, &e, true, NULL);
                if (rc == 0)
                    agent_resync_mark(&t->rs, x->disk, e.offset, n);
                x->pos += n;
                break;
            }
            case PC_READ: {
                uint32_t n = left > WIRE_MAX_WRITE ? WIRE_MAX_WRITE : (uint32_t)left;
                if (!x->read_ready) {
                    if (!x->rbuf && !(x->rbuf = tm_malloc(WIRE_MAX_WRITE))) {
                        rc = -ENOMEM;
                        break;
                    }
                    x->rio = (nbd_io_t){.kind = NBD_IO_READ, .offset = p->off + x->pos, .length = n,
                                        .buf = x->rbuf, .export = x->io->export};
                    x->reading = true;
                    nbd_file_submit(x->io->export, &x->rio, tap_on_readback, x);
                    if (x->reading)
                        return;
                    continue; /* completed at once */
                }
                x->read_ready = false;
                if (x->status == 0) {
                    wire_entry_t e = {.kind = WIRE_R_WRITE, .disk = x->disk, .offset = p->off + x->pos,
                                      .length = n, .data = x->rbuf};
                    rc = agent_stream_append(&t->stream, &e, true, NULL);
                    if (rc == 0)
                        agent_resync_mark(&t->rs, x->disk, e.offset, n);
                }
                x->pos += n;
                break;
            }
            case PC_ZERO:
            case PC_TRIM: {
                uint32_t n = left > ZERO_CHUNK ? ZERO_CHUNK : (uint32_t)left;
                wire_entry_t e = {.kind = p->kind == PC_ZERO ? WIRE_R_ZERO : WIRE_R_TRIM, .disk = x->disk,
                                  .offset = p->off + x->pos, .length = n};
                rc = agent_stream_append(&t->stream, &e, true, NULL);
                if (rc == 0)
                    agent_resync_mark(&t->rs, x->disk, e.offset, n);
                x->pos += n;
                break;
            }
            case PC_FLUSH:
                rc = agent_stream_flush(&t->stream, true, NULL);
                x->pos = p->len;
                break;
            case PC_COPY: /* only in copy items, handled above */
                x->pos = p->len;
                break;
            }
            if (rc != 0) {
                tm_error("tap: cannot add to the stream: %s", tm_strerror(rc));
                x->status = -EIO;
            }
        }
        /* Every record of x is in the stream. */
        t->queue_head = x->next;
        if (!t->queue_head)
            t->queue_tail = NULL;
        x->appended = true;
        x->target = t->stream.appended;
        if (x->io->kind != NBD_IO_FLUSH) {
            t->reserved -= x->reserve;
            x->reserve = 0;
        }
        agent_client_kick(t->client);
        bool wait_ack = x->io->kind == NBD_IO_FLUSH || (x->io->flags & NBD_IO_FUA);
        if (x->status != 0 && x->local_done) {
            tap_complete(x, x->status);
        } else if (wait_ack && (!x->local_done || agent_stream_acked_count(&t->stream) < x->target)) {
            x->where = W_ACK;
            x->next = t->ack_head;
            t->ack_head = x;
        } else {
            tap_complete(x, 0);
        }
    }
    tap_admit(t);
}

/* ---- the initial copy ------------------------------------------------------------ */

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static void tap_on_copy_read(uv_fs_t *req)
{
    tap_io_t *x = req->data;
    ssize_t got = req->result;
    uv_fs_req_cleanup(req);
    x->reading = false;
    x->read_ready = true;
    if (got < 0)
        x->status = (int)got; /* libuv errors are negative errnos */
    else if ((uint64_t)got != x->pieces[0].len)
        x->status = -EIO; /* the file shrank under us */
    tap_drain(x->tap);
}

/* The copy item at the head of the queue: read its chunk (false: wait for
 * it), then append it unless it is all zeros, and SYNCED after the disk's
 * last chunk. */
static bool tap_copy_step(tap_t *t, tap_io_t *x)
{
    piece_t *p = &x->pieces[0];
    tap_copy_t *cp = &t->copy[x->disk];
    if (x->reading)
        return false;
    if (!x->read_ready) {
        x->rbuf = tm_malloc(p->len);
        if (!x->rbuf) {
            x->status = -ENOMEM;
            return true;
        }
        uv_buf_t b = uv_buf_init((char *)x->rbuf, (unsigned)p->len);
        x->fsreq.data = x;
        x->reading = true;
        int rc = uv_fs_read(&t->loop, &x->fsreq, cp->fd, &b, 1, (int64_t)p->off, tap_on_copy_read);
        if (rc == 0)
            return false;
        x->reading = false;
        x->status = rc;
        return true;
    }
    if (x->status != 0)
        return true;
    int rc = 0;
    if (all_zero(x->rbuf, p->len)) {
        cp->skipped++;
    } else {
        wire_entry_t e = {.kind = WIRE_R_WRITE, .disk = x->disk, .offset = p->off, .length = (uint32_t)p->len,
                          .data = x->rbuf};
        rc = agent_stream_append(&t->stream, &e, true, NULL);
        cp->sent++;
    }
    if (rc == 0 && p->off + p->len >= cp->size)
        rc = agent_stream_synced(&t->stream, x->disk, true, NULL);
    if (rc != 0)
        x->status = rc;
    return true;
}

static void tap_copy_chunk_done(tap_t *t, tap_io_t *x)
{
    tap_copy_t *cp = &t->copy[x->disk];
    const piece_t *p = &x->pieces[0];
    t->reserved -= x->reserve;
    t->copy_out = false;
    if (x->status != 0) {
        cp->state = CP_FAILED;
        tm_error("tap: disk %s: initial copy stopped at byte %llu: %s; it starts over when the server next asks "
                 "for it", t->disks[x->disk].name, (unsigned long long)p->off, tm_strerror(x->status));
    } else {
        cp->pos = p->off + p->len;
        if (cp->pos >= cp->size) {
            cp->state = CP_QUEUED;
            cp->target = t->stream.appended;
            tm_info("tap: disk %s: initial copy read: %llu chunk(s) of %u KiB sent, %llu all-zero chunk(s) "
                    "skipped; waiting for the server to acknowledge it",
                    t->disks[x->disk].name, (unsigned long long)cp->sent, COPY_CHUNK >> 10,
                    (unsigned long long)cp->skipped);
        }
    }
    tm_free(x->rbuf);
    tm_free(x);
    if (t->client)
        agent_client_kick(t->client);
}

/*
 * Jump the copy over a hole of the image file (SEEK_DATA), so a sparse
 * terabyte is not read to find its zeros. Safe without holding anything:
 * the appliance's copy starts from zeros, a region that is a hole now reads
 * as zeros, and every write a client makes to it from now on is streamed
 * after this point (a write applied before now made it data). The last
 * chunk is always read, since its SYNCED closes the copy.
 */
static void tap_copy_skip_holes(tap_t *t, tap_copy_t *cp)
{
    (void)t;
    uint64_t last = cp->size > COPY_CHUNK ? cp->size - COPY_CHUNK : 0;
    if (cp->fd < 0 || cp->pos >= last)
        return;
    off_t data = lseek(cp->fd, (off_t)cp->pos, SEEK_DATA);
    uint64_t to;
    if (data >= 0)
        to = (uint64_t)data / COPY_CHUNK * COPY_CHUNK; /* chunks stay where they were */
    else if (errno == ENXIO)
        to = cp->size; /* nothing but holes from here */
    else
        return; /* no SEEK_DATA here: read it all */
    if (to > last)
        to = last / COPY_CHUNK * COPY_CHUNK;
    if (to > cp->pos) {
        cp->skipped += (to - cp->pos + COPY_CHUNK - 1) / COPY_CHUNK;
        cp->pos = to;
    }
}

static void on_copy_timer(uv_timer_t *h)
{
    tap_copy_pump(h->data);
}

/* Queue the next chunk of the copy, if any, when the stream has room and no
 * client write waits for room. */
static void tap_copy_pump(tap_t *t)
{
    /* Not during a quiesce either: its drain waits for the queue to empty.
     * A STOP does not pause it: the final tag waits for the copy. */
    if (!t->copy || t->copy_out || t->room_head || t->shutting_down || t->holding)
        return;
    unsigned d;
    for (d = 0; d < t->ndisks; d++)
        if (t->copy[d].state == CP_RUNNING || t->copy[d].state == CP_WANTED)
            break;
    if (d == t->ndisks)
        return;
    tap_copy_t *cp = &t->copy[d];
    if (cp->state == CP_RUNNING)
        tap_copy_skip_holes(t, cp);
    uint64_t len = cp->size - cp->pos < COPY_CHUNK ? cp->size - cp->pos : COPY_CHUNK;
    size_t reserve = agent_stream_cost(len) + agent_stream_cost(0);
    /* Strictly within the bound (unlike a client's write, which may pass it
     * by one request): the copy must never grow the stream on its own. */
    if (!agent_stream_has_room(&t->stream, t->reserved + reserve))
        return;
    if (t->copy_rate) {
        uint64_t now = uv_now(&t->loop);
        if (now < t->copy_next_ms) {
            if (t->copy_timer_init && !uv_is_active((uv_handle_t *)&t->copy_timer))
                uv_timer_start(&t->copy_timer, on_copy_timer, t->copy_next_ms - now, 0);
            return;
        }
        t->copy_next_ms = (t->copy_next_ms > now ? t->copy_next_ms : now) + len * 1000 / t->copy_rate;
    }
    tap_io_t *x = tm_calloc(1, sizeof *x);
    if (!x)
        return; /* tried again at the next ack or write */
    if (cp->state == CP_WANTED) {
        cp->state = CP_RUNNING;
        cp->pos = 0;
        cp->sent = cp->skipped = 0;
        tm_info("tap: disk %s: initial copy started (%llu bytes)", t->disks[d].name, (unsigned long long)cp->size);
    }
    x->tap = t;
    x->copy = true;
    x->disk = (uint16_t)d;
    x->pieces[0] = (piece_t){PC_COPY, cp->pos, len};
    x->npieces = 1;
    x->reserve = reserve;
    x->where = W_QUEUE;
    t->reserved += reserve;
    t->copy_out = true;
    bool was_empty = t->queue_head == NULL;
    list_push(&t->queue_head, &t->queue_tail, x);
    if (was_empty)
        tap_drain(t);
}

/* The first WELCOME checks the clean-shutdown markers taken at start: one
 * whose sequence is not where the appliance's stream ends does not vouch
 * for the disk (the appliance lost or gained records since): resync it. */
static void tap_check_markers(tap_t *t, const wire_welcome_t *w)
{
    for (unsigned d = 0; d < t->ndisks && d < w->ndisks; d++) {
        tap_copy_t *cp = &t->copy[d];
        if (!cp->clean)
            continue;
        cp->clean = false;
        if (w->disk_state[d] != WIRE_DISK_SYNCED || cp->clean_seq == w->next_seq - 1)
            continue;
        tm_warn("tap: disk %s: stopped cleanly at sequence %llu, but the appliance's stream ends at %llu; "
                "comparing the disk with the appliance's copy (resync)",
                t->disks[d].name, (unsigned long long)cp->clean_seq, (unsigned long long)(w->next_seq - 1));
        int rc = agent_resync_want(&t->rs, (uint16_t)d);
        if (rc == 0)
            rc = agent_stream_resync(&t->stream, (uint16_t)d, true, NULL);
        if (rc != 0)
            tm_error("tap: disk %s: cannot start its resync: %s", t->disks[d].name, tm_strerror(rc));
    }
}

static void tap_on_welcome(agent_client_t *c, const wire_welcome_t *w, void *arg)
{
    tap_t *t = arg;
    (void)c;
    if (!t->welcomed) {
        t->welcomed = true;
        tap_check_markers(t, w);
    }
    for (unsigned d = 0; d < t->ndisks && d < w->ndisks; d++) {
        tap_copy_t *cp = &t->copy[d];
        if (w->disk_state[d] == WIRE_DISK_SYNCED) {
            if (cp->state == CP_IDLE)
                cp->state = CP_DONE;
            continue;
        }
        /* A copy running or queued in this process goes on: the stream
         * resends what the server lacks. */
        if (cp->state == CP_IDLE || cp->state == CP_FAILED) {
            cp->state = CP_WANTED;
            tm_info("tap: disk %s: the appliance holds no full copy yet; sending it whole", t->disks[d].name);
        }
    }
    agent_resync_welcome(&t->rs, w);
    agent_resync_kick(&t->rs);
    tap_copy_pump(t);
    tap_resync_pump(t);
}

/* ---- the resync --------------------------------------------------------------------- */

static void tap_on_sums(agent_client_t *c, const wire_resync_sums_t *m, void *arg)
{
    tap_t *t = arg;
    char why[256];
    if (agent_resync_on_sums(&t->rs, m, why, sizeof why) != 0) {
        agent_client_abort(c, why);
        return;
    }
    tap_resync_pump(t);
}

/* Queue the next resync item, when there are sums for one, the stream has
 * room for every block of it to differ, and nothing else is in the way
 * (the copy's rules). */
static void tap_resync_pump(tap_t *t)
{
    if (!t->copy || t->copy_out || t->room_head || t->shutting_down || t->holding)
        return;
    size_t reserve = agent_stream_cost(AGENT_RESYNC_ITEM_BYTES) + AGENT_RESYNC_ITEM_BLOCKS * AGENT_REC_OVERHEAD +
                     agent_stream_cost(0);
    if (!agent_stream_has_room(&t->stream, t->reserved + reserve))
        return;
    tap_io_t *x = tm_calloc(1, sizeof *x);
    agent_rs_item_t *it = x ? tm_malloc(sizeof *it) : NULL;
    if (!it || !agent_resync_next(&t->rs, it)) {
        tm_free(it);
        tm_free(x);
        return; /* out of memory: tried again at the next ack or write */
    }
    x->tap = t;
    x->copy = true;
    x->rsi = it;
    x->disk = it->disk;
    x->pieces[0] = (piece_t){PC_COPY, it->off, it->len};
    x->npieces = 1;
    x->reserve = reserve;
    x->where = W_QUEUE;
    t->reserved += reserve;
    t->copy_out = true;
    bool was_empty = t->queue_head == NULL;
    list_push(&t->queue_head, &t->queue_tail, x);
    if (was_empty)
        tap_drain(t);
}

/* The resync item at the head of the queue: read its range (false: wait
 * for it), then append each block that differs from the appliance's sum or
 * that a record of this process touched (adjacent ones as one write), and
 * SYNCED after the disk's last block. */
static bool tap_resync_step(tap_t *t, tap_io_t *x)
{
    if (x->reading)
        return false;
    const agent_rs_item_t *it = x->rsi;
    if (!x->read_ready) {
        x->rbuf = tm_malloc(it->len);
        if (!x->rbuf) {
            x->status = -ENOMEM;
            return true;
        }
        uv_buf_t b = uv_buf_init((char *)x->rbuf, (unsigned)it->len);
        x->fsreq.data = x;
        x->reading = true;
        int rc = uv_fs_read(&t->loop, &x->fsreq, t->copy[x->disk].fd, &b, 1, (int64_t)it->off, tap_on_copy_read);
        if (rc == 0)
            return false;
        x->reading = false;
        x->status = rc;
        return true;
    }
    if (x->status != 0)
        return true;
    int rc = 0;
    uint64_t run_off = 0, run_len = 0; /* differing blocks not appended yet */
    for (uint32_t k = 0; k <= it->count && rc == 0; k++) {
        bool differs = false;
        uint64_t at = (uint64_t)k * it->block, bl = 0;
        if (k < it->count) {
            bl = it->len - at < it->block ? it->len - at : it->block;
            differs = agent_resync_dirty(&t->rs, x->disk, it->first_block + k) ||
                      XXH3_64bits(x->rbuf + at, bl) != it->sums[k];
        }
        if (differs) {
            if (!run_len)
                run_off = at;
            run_len += bl;
            x->rs_differed++;
            continue;
        }
        if (run_len) {
            /* an item is at most one write's length: a run fits one record */
            wire_entry_t e = {.kind = WIRE_R_WRITE, .disk = x->disk, .offset = it->off + run_off,
                              .length = (uint32_t)run_len, .data = x->rbuf + run_off};
            rc = agent_stream_append(&t->stream, &e, true, NULL);
            x->rs_bytes += run_len;
            run_len = 0;
        }
    }
    if (rc == 0 && it->last)
        rc = agent_stream_synced(&t->stream, x->disk, true, NULL);
    if (rc != 0)
        x->status = rc;
    return true;
}

static void tap_resync_item_done(tap_t *t, tap_io_t *x)
{
    agent_rs_item_t *it = x->rsi;
    t->reserved -= x->reserve;
    t->copy_out = false;
    if (x->status != 0) {
        tm_error("tap: disk %s: resync: cannot compare blocks %llu..%llu: %s; asking again", t->disks[x->disk].name,
                 (unsigned long long)it->first_block, (unsigned long long)(it->first_block + it->count - 1),
                 tm_strerror(x->status));
        agent_resync_retry(&t->rs, it);
        if (t->client)
            agent_client_abort(t->client, "the resync starts again where it failed");
    } else {
        agent_resync_item_done(&t->rs, it, x->rs_differed, x->rs_bytes, t->stream.appended);
        if (it->last)
            tm_info("tap: disk %s: resync compared; waiting for the server to acknowledge it",
                    t->disks[x->disk].name);
    }
    tm_free(it);
    tm_free(x->rbuf);
    tm_free(x);
    if (t->client)
        agent_client_kick(t->client);
}

/* ---- the client's events --------------------------------------------------------- */

static void tap_on_acked(agent_client_t *c, uint64_t durable, void *arg)
{
    tap_t *t = arg;
    (void)c;
    (void)durable;
    uint64_t done = agent_stream_acked_count(&t->stream);
    tap_io_t **pp = &t->ack_head;
    while (*pp) {
        tap_io_t *x = *pp;
        if (x->local_done && x->target <= done) {
            *pp = x->next;
            tap_complete(x, x->status);
        } else {
            pp = &x->next;
        }
    }
    for (unsigned d = 0; d < t->ndisks; d++) {
        tap_copy_t *cp = &t->copy[d];
        if (cp->state == CP_QUEUED && cp->target <= done) {
            cp->state = CP_DONE;
            tm_info("tap: disk %s: initial copy complete and durable at the appliance", t->disks[d].name);
        }
    }
    agent_resync_acked(&t->rs, done);
    tap_admit(t);
    tap_check_exit(t);
}

static void tap_on_tag(agent_client_t *c, uint8_t kind, uint64_t id, const char *name, void *arg)
{
    tap_t *t = arg;
    (void)c;
    agent_quiesce_request(t->q, kind, id, name);
}

/* ---- the quiesce's hooks (agent/quiesce.h) ------------------------------------------ */

static void tap_hold(void *arg)
{
    tap_t *t = arg;
    t->holding = true;
}

/* Every write-like accepted before the hold is in the stream: none waits
 * for room, none is on the file, the append queue is empty (a copy chunk in
 * it counts too: the copy does not start another one while holding). */
static bool tap_drained(void *arg)
{
    tap_t *t = arg;
    return !t->room_head && t->local == 0 && !t->queue_head;
}

static void tap_unhold(void *arg)
{
    tap_t *t = arg;
    bool was = t->holding;
    uint64_t round = t->q ? agent_quiesce_round(t->q) : 0;
    t->holding = false;
    if (was && t->nheld && round)
        tm_info("tap: releasing %u write(s) held during group round %llu", t->nheld, (unsigned long long)round);
    else if (was && t->nheld)
        tm_info("tap: releasing %u write(s) held during the app tag", t->nheld);
    /* In the order they came, behind anything already waiting for room. */
    while (t->held_head) {
        tap_io_t *x = t->held_head;
        t->held_head = x->next;
        x->where = W_ROOM;
        list_push(&t->room_head, &t->room_tail, x);
    }
    t->held_tail = NULL;
    t->nheld = 0;
    tap_admit(t);
    tap_check_exit(t);
}

/* Every write-like accepted before a STOP is in the stream (tap_drained),
 * and so is what the appliance needs for the final tag to name a point:
 * no disk's initial copy or resync is left half sent (a tag in the middle
 * of one names no point). A copy that failed is not waited for: it starts
 * over only at the next WELCOME. Shutting down, the copy and resync stop
 * where they are and only the writes count. */
static bool tap_final_drained(void *arg)
{
    tap_t *t = arg;
    if (!tap_drained(t))
        return false;
    if (t->shutting_down)
        return true;
    for (unsigned d = 0; d < t->ndisks; d++) {
        copy_state_t cs = t->copy[d].state;
        agent_rs_state_t rs = t->rs.d[d].state;
        if (cs == CP_WANTED || cs == CP_RUNNING || rs == AGENT_RS_WAITING || rs == AGENT_RS_RUNNING ||
            rs == AGENT_RS_FINISHING)
            return false;
    }
    return true;
}

/* A group tag names a point only where the appliance's copy is whole and
 * this agent can say every write before it is in: not while stopped (the
 * STOP's final tag is the point), not during a disk's initial copy or
 * resync (no point exists in either), not while ending. */
static bool tap_round_refused(void *arg, char *why, size_t len)
{
    tap_t *t = arg;
    if (t->shutting_down) {
        snprintf(why, len, "the agent is ending");
        return true;
    }
    if (t->stopped) {
        snprintf(why, len, "stopped");
        return true;
    }
    for (unsigned d = 0; d < t->ndisks; d++) {
        copy_state_t cs = t->copy[d].state;
        agent_rs_state_t rs = t->rs.d[d].state;
        if (cs == CP_WANTED || cs == CP_RUNNING || cs == CP_FAILED) {
            snprintf(why, len, "disk %s: its initial copy is not complete: no consistent point can be cut there",
                     t->disks[d].name);
            return true;
        }
        if (rs == AGENT_RS_WAITING || rs == AGENT_RS_RUNNING || rs == AGENT_RS_FINISHING) {
            snprintf(why, len, "disk %s: its resync is running: no consistent point can be cut there",
                     t->disks[d].name);
            return true;
        }
    }
    return false;
}

static void tap_on_group_prepare(agent_client_t *c, const wire_group_prepare_t *m, void *arg)
{
    tap_t *t = arg;
    (void)c;
    if (t->q)
        agent_quiesce_group_prepare(t->q, m);
}

static void tap_on_group_commit(agent_client_t *c, uint64_t round, void *arg)
{
    tap_t *t = arg;
    (void)c;
    if (t->q)
        agent_quiesce_group_commit(t->q, round);
}

static void tap_on_group_abort(agent_client_t *c, uint64_t round, void *arg)
{
    tap_t *t = arg;
    (void)c;
    if (t->q)
        agent_quiesce_group_abort(t->q, round);
}

static void tap_on_down(agent_client_t *c, void *arg)
{
    tap_t *t = arg;
    (void)c;
    if (t->q)
        agent_quiesce_session_lost(t->q);
}

static void tap_on_stop(agent_client_t *c, const wire_stop_t *m, void *arg)
{
    tap_t *t = arg;
    (void)c;
    /* Shutting down, writes are refused already; the tag still comes
     * before the agent ends (tap_check_exit waits for it). */
    if (!t->stopped) {
        t->refused = 0;
        tm_info("tap: new writes are refused from now on; those accepted before go on");
    }
    t->stopped = true;
    snprintf(t->stop_reason, sizeof t->stop_reason, "%s", m->reason);
    if (t->q)
        agent_quiesce_stop(t->q, m->id, m->name);
}

static void tap_on_resume(agent_client_t *c, const char *reason, void *arg)
{
    tap_t *t = arg;
    (void)c;
    (void)reason;
    if (!t->stopped || t->shutting_down)
        return;
    t->stopped = false;
    tm_info("tap: taking writes again (%llu refused while replication was stopped)", (unsigned long long)t->refused);
    if (t->q)
        agent_quiesce_resume(t->q);
    tap_admit(t);
}

/* ---- running ---------------------------------------------------------------------- */

static void on_closed_handle(uv_handle_t *h)
{
    (void)h;
}

static void tap_close_quiesce(tap_t *t)
{
    if (!t->q)
        return;
    agent_quiesce_close(t->q);
    t->q = NULL;
    t->holding = false;
}

/* A clean stop: every record acknowledged, no client left. Each disk the
 * appliance now holds exactly (copied, no resync left to do) gets its
 * marker, so the next start need not compare it. Without a WELCOME in this
 * process nothing was appended (everything is acknowledged), so a marker
 * taken at start still holds. */
static void tap_put_markers(tap_t *t)
{
    for (unsigned d = 0; d < t->ndisks; d++) {
        tap_copy_t *cp = &t->copy[d];
        uint64_t seq;
        if (t->welcomed && cp->state == CP_DONE && agent_resync_idle(&t->rs, (uint16_t)d))
            seq = t->stream.acked_seq;
        else if (!t->welcomed && cp->clean)
            seq = cp->clean_seq;
        else
            continue;
        int rc = agent_clean_put(t->disks[d].path, cp->fd, t->machine, t->disks[d].name, cp->size, seq);
        if (rc != 0)
            tm_warn("tap: disk %s: cannot write its clean-shutdown marker: %s; the next start compares the disk "
                    "with the appliance's copy", t->disks[d].name, tm_strerror(rc));
    }
}

/* At exit, one line: how the group rounds went and how long they held. */
static void tap_log_rounds(tap_t *t)
{
    char line[256];
    if (!t->client)
        return;
    agent_client_round_summary(t->client, line, sizeof line);
    tm_info("tap: %s", line);
}

static void tap_check_exit(tap_t *t)
{
    if (!t->shutting_down || t->finishing || t->srv || (t->q && agent_quiesce_busy(t->q)) ||
        !agent_stream_all_acked(&t->stream))
        return;
    t->finishing = true;
    tap_put_markers(t);
    tap_log_rounds(t);
    printf("tap: stopped; every record acknowledged up to sequence %llu\n",
           (unsigned long long)t->stream.acked_seq);
    fflush(stdout);
    uv_close((uv_handle_t *)&t->sigint, on_closed_handle);
    uv_close((uv_handle_t *)&t->sigterm, on_closed_handle);
    uv_close((uv_handle_t *)&t->copy_timer, on_closed_handle);
    tap_close_quiesce(t);
    agent_client_close(t->client, NULL, NULL);
    t->client = NULL;
}

static void on_nbd_closed(void *arg)
{
    tap_t *t = arg;
    t->srv = NULL;
    /* A STOP's final tag waiting for the copy is due now (tap_final_drained). */
    if (t->q)
        agent_quiesce_check(t->q);
    tap_check_exit(t);
}

static void on_signal(uv_signal_t *h, int signum)
{
    tap_t *t = h->data;
    if (++t->signals > 1 || !t->client) {
        tm_warn("tap: signal %d; ending without waiting for acknowledgements", signum);
        t->exit_code = 1;
        if (t->srv) {
            nbd_server_close(t->srv, NULL, NULL);
            t->srv = NULL;
        }
        t->shutting_down = true;
        t->finishing = true;
        tap_log_rounds(t);
        uv_close((uv_handle_t *)&t->sigint, on_closed_handle);
        uv_close((uv_handle_t *)&t->sigterm, on_closed_handle);
        uv_close((uv_handle_t *)&t->copy_timer, on_closed_handle);
        tap_close_quiesce(t);
        if (t->client)
            agent_client_close(t->client, NULL, NULL);
        t->client = NULL;
        return;
    }
    tm_info("tap: signal %d; closing the NBD server and waiting for the server to acknowledge what is held "
            "(again to end now)", signum);
    t->shutting_down = true;
    t->stopped = true;
    nbd_server_close(t->srv, on_nbd_closed, t);
}

static const nbd_backend_ops_t tap_ops = {
    .open = tap_open,
    .list = tap_list,
    .read = tap_read,
    .write = tap_writelike,
    .flush = tap_flush,
    .trim = tap_writelike,
    .zero = tap_writelike,
    .cancel = tap_cancel,
    .release = tap_release,
};

static int disk_size(const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    off_t end = lseek(fd, 0, SEEK_END);
    int rc = end < 0 ? -errno : 0;
    close(fd);
    if (rc == 0)
        *size = (uint64_t)end;
    return rc;
}

int agent_tap_run(const agent_tap_opts_t *o)
{
    tap_t *t = tm_calloc(1, sizeof *t);
    wire_disk_t *wd = tm_calloc(o->ndisks ? o->ndisks : 1, sizeof *wd);
    int rc, code = 1;
    if (!t || !wd) {
        tm_error("tap: out of memory");
        tm_free(t);
        tm_free(wd);
        return 1;
    }
    t->disks = o->disks;
    t->ndisks = o->ndisks;
    t->copy_rate = o->copy_rate;
    t->machine = o->machine;
    t->copy = tm_calloc(o->ndisks ? o->ndisks : 1, sizeof *t->copy);
    t->names = tm_calloc(o->ndisks ? o->ndisks : 1, sizeof *t->names);
    if (!t->copy || !t->names) {
        tm_error("tap: out of memory");
        goto free_t;
    }
    for (unsigned i = 0; i < o->ndisks; i++)
        t->copy[i].fd = -1;
    if (o->ndisks == 0 || o->ndisks > WIRE_MAX_DISKS) {
        tm_error("tap: %u disks; 1 to %u are allowed", o->ndisks, WIRE_MAX_DISKS);
        code = 2;
        goto free_t;
    }
    for (unsigned i = 0; i < o->ndisks; i++) {
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(o->disks[i].name, o->disks[j].name) == 0) {
                tm_error("tap: disk name '%s' given twice", o->disks[i].name);
                code = 2;
                goto free_t;
            }
        }
        snprintf(wd[i].name, sizeof wd[i].name, "%s", o->disks[i].name);
        if ((rc = disk_size(o->disks[i].path, &wd[i].size)) != 0) {
            tm_error("tap: disk %s: cannot open %s: %s", o->disks[i].name, o->disks[i].path, tm_strerror(rc));
            code = 2;
            goto free_t;
        }
        if (wd[i].size == 0 || wd[i].size % WIRE_SECTOR) {
            tm_error("tap: disk %s: %s is %llu bytes; a disk must be a non-zero multiple of 512 bytes",
                     o->disks[i].name, o->disks[i].path, (unsigned long long)wd[i].size);
            code = 2;
            goto free_t;
        }
        t->copy[i].size = wd[i].size;
        if ((t->copy[i].fd = open(o->disks[i].path, O_RDONLY | O_CLOEXEC)) < 0) {
            rc = -errno;
            tm_error("tap: disk %s: cannot open %s: %s", o->disks[i].name, o->disks[i].path, tm_strerror(rc));
            code = 2;
            goto free_t;
        }
    }
    if ((rc = uv_loop_init(&t->loop)) != 0) {
        tm_error("tap: cannot make an event loop: %s", uv_strerror(rc));
        goto free_t;
    }
    if ((rc = agent_stream_init(&t->stream, 1, o->queue_bytes)) != 0) {
        tm_error("tap: cannot make the stream: %s", tm_strerror(rc));
        goto close_loop;
    }
    /* Before any write is served: a disk without a clean-shutdown marker
     * opens its stream with RESYNC (tap.c, "The resync"); every disk's
     * written blocks are tracked until the first WELCOME says which ones
     * are compared. */
    uint64_t sizes[WIRE_MAX_DISKS];
    for (unsigned i = 0; i < o->ndisks && i < WIRE_MAX_DISKS; i++) {
        sizes[i] = wd[i].size;
        t->names[i] = o->disks[i].name;
    }
    if ((rc = agent_resync_init(&t->rs, o->ndisks, sizes)) != 0) {
        tm_error("tap: %s", tm_strerror(rc));
        goto free_stream;
    }
    t->rs.names = t->names;
    for (unsigned i = 0; i < o->ndisks; i++) {
        tap_copy_t *cp = &t->copy[i];
        rc = agent_clean_take(o->disks[i].path, o->machine, o->disks[i].name, cp->size, &cp->clean_seq);
        if (rc < 0) {
            tm_error("tap: disk %s: cannot remove the clean-shutdown marker beside %s: %s", o->disks[i].name,
                     o->disks[i].path, tm_strerror(rc));
            code = 2;
            goto free_stream;
        }
        cp->clean = rc == 1;
        rc = agent_resync_track(&t->rs, (uint16_t)i);
        if (rc == 0 && !cp->clean) {
            tm_info("tap: disk %s: no clean-shutdown marker: writes may have been lost to the appliance; the disk "
                    "is compared with its copy there (resync) once connected", o->disks[i].name);
            rc = agent_resync_want(&t->rs, (uint16_t)i);
            if (rc == 0)
                rc = agent_stream_resync(&t->stream, (uint16_t)i, true, NULL);
        }
        if (rc != 0) {
            tm_error("tap: disk %s: %s", o->disks[i].name, tm_strerror(rc));
            goto free_stream;
        }
    }
    if ((rc = nbd_file_backend_new(&t->loop, &t->fb)) != 0) {
        tm_error("tap: cannot make the file backend: %s", tm_strerror(rc));
        goto free_stream;
    }
    for (unsigned i = 0; i < o->ndisks; i++) {
        if ((rc = nbd_file_backend_add(t->fb, o->disks[i].name, o->disks[i].path, false)) != 0) {
            tm_error("tap: disk %s: cannot export %s: %s", o->disks[i].name, o->disks[i].path, tm_strerror(rc));
            code = 2;
            goto free_fb;
        }
    }
    agent_client_opts_t co = {
        .server = o->server,
        .machine = o->machine,
        .agent_version = "tidemark-agent-tap",
        .ndisks = o->ndisks,
        .disks = wd,
        .compress = true,
    };
    memcpy(co.secret, o->secret, AGENT_SECRET_LEN);
    agent_client_cbs_t cbs = {.welcome = tap_on_welcome, .acked = tap_on_acked, .stop = tap_on_stop,
                              .resume = tap_on_resume, .tag = tap_on_tag, .sums = tap_on_sums,
                              .group_prepare = tap_on_group_prepare, .group_commit = tap_on_group_commit,
                              .group_abort = tap_on_group_abort, .down = tap_on_down};
    rc = agent_client_new(&t->loop, &co, &t->stream, &cbs, t, &t->client);
    memset(co.secret, 0, sizeof co.secret);
    if (rc != 0) {
        tm_error("tap: bad server address '%s' or machine name '%s'", o->server, o->machine);
        code = 2;
        goto free_fb;
    }
    t->rs.client = t->client;
    agent_quiesce_opts_t qo = {.pre_script = o->pre_script, .post_script = o->post_script,
                               .timeout_ms = o->script_timeout_ms};
    agent_quiesce_hooks_t qh = {.hold = tap_hold, .drained = tap_drained, .release = tap_unhold,
                                .final_drained = tap_final_drained, .round_refused = tap_round_refused};
    if ((rc = agent_quiesce_new(&t->loop, &qo, &t->stream, &qh, t, &t->q)) != 0) {
        tm_error("tap: %s", tm_strerror(rc));
        agent_client_close(t->client, NULL, NULL);
        t->client = NULL;
        uv_run(&t->loop, UV_RUN_DEFAULT);
        goto free_fb;
    }
    agent_quiesce_set_client(t->q, t->client);
    tap_self = t;
    if ((rc = nbd_server_new(&t->loop, &tap_ops, t, &t->srv)) != 0 ||
        (rc = nbd_server_listen(t->srv, o->listen)) != 0) {
        tm_error("tap: cannot serve NBD on %s: %s", o->listen, tm_strerror(rc));
        if (t->srv)
            nbd_server_close(t->srv, NULL, NULL);
        t->srv = NULL;
        tap_close_quiesce(t);
        agent_client_close(t->client, NULL, NULL);
        t->client = NULL;
        uv_run(&t->loop, UV_RUN_DEFAULT);
        code = 2;
        goto free_fb;
    }
    uv_signal_init(&t->loop, &t->sigint);
    uv_signal_init(&t->loop, &t->sigterm);
    uv_timer_init(&t->loop, &t->copy_timer);
    t->copy_timer_init = true;
    t->sigint.data = t->sigterm.data = t->copy_timer.data = t;
    uv_signal_start(&t->sigint, on_signal, SIGINT);
    uv_signal_start(&t->sigterm, on_signal, SIGTERM);

    /* The host part as given, the port as bound (port 0 picks one). */
    char host[128];
    snprintf(host, sizeof host, "%s", o->listen);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    printf("tap: listening on %s:%d\n", host, nbd_server_port(t->srv));
    fflush(stdout);
    tm_info("tap: machine %s, %u disk(s), server %s", o->machine, o->ndisks, o->server);

    agent_client_start(t->client);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    code = t->exit_code;

free_fb:
    if (t->fb && (rc = nbd_file_backend_free(t->fb)) != 0)
        tm_warn("tap: file backend still busy at exit: %s", tm_strerror(rc));
free_stream:
    agent_resync_free(&t->rs);
    agent_stream_free(&t->stream);
close_loop:
    uv_run(&t->loop, UV_RUN_DEFAULT);
    if ((rc = uv_loop_close(&t->loop)) != 0)
        tm_warn("tap: event loop closed with handles open: %s", uv_strerror(rc));
free_t:
    tap_self = NULL;
    for (unsigned i = 0; t->copy && i < o->ndisks; i++)
        if (t->copy[i].fd >= 0)
            close(t->copy[i].fd);
    tm_free(t->copy);
    tm_free(t->names);
    tm_free(wd);
    tm_free(t);
    return code;
}
