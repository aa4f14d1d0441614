/*
 * The server's side of a resync (docs/agent-protocol.md, "Resync"): an
 * agent that lost track of its writes asks for the block sums of a disk;
 * the block-sum provider computes them a range at a time, and each range
 * goes back as one RESYNC_SUMS frame, in block order.
 *
 * Flow control: at most INGEST_RESYNC_CALLS provider calls per session, and
 * calls plus frames sent but not acknowledged (RESYNC_ACK) at most
 * WIRE_RESYNC_WINDOW. So a session holds at most a window of sums, whatever
 * the disk's size, and a slow agent only slows its own resync.
 *
 * Lifetimes: a call belongs to ingest until the provider says it is done. A
 * session that ends first (an error, a disconnect, the server stopping)
 * leaves its calls orphaned (call->rs NULL) and they are freed when done;
 * ingest_stop waits for them (ig->sums_inflight).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "ingest/ingest_int.h"

typedef struct ig_call {
    ingest_sums_req_t req; /* first: the provider hands it back */
    ingest_t *ig;
    ig_resync_t *rs;       /* NULL once its session is gone */
    bool done;
} ig_call_t;

struct ig_resync {
    ig_conn_t *conn;
    uint16_t disk;
    uint32_t block;
    uint64_t nblocks;
    uint64_t first_block;  /* as asked */
    uint64_t next_block;   /* the next block to ask the provider for */
    ig_call_t *calls[INGEST_RESYNC_CALLS]; /* in block order, oldest first */
    unsigned ncalls;
    unsigned unacked;      /* RESYNC_SUMS frames sent, not acknowledged */
    bool last_sent;
};

static void ig__call_free(ig_call_t *call)
{
    tm_free(call->req.sums);
    tm_free(call);
}

void ig_resync_release(ig_conn_t *c)
{
    ig_resync_t *rs = c->rs;
    if (!rs)
        return;
    for (unsigned i = 0; i < rs->ncalls; i++) {
        if (rs->calls[i]->done)
            ig__call_free(rs->calls[i]);
        else
            rs->calls[i]->rs = NULL; /* freed when the provider is done */
    }
    tm_free(rs);
    c->rs = NULL;
}

static void ig__pump(ig_conn_t *c)
{
    ig_resync_t *rs = c->rs;
    ingest_t *ig = c->ig;
    ig_machine_t *m = c->m;
    while (rs->ncalls < INGEST_RESYNC_CALLS && rs->ncalls + rs->unacked < WIRE_RESYNC_WINDOW &&
           rs->next_block < rs->nblocks && !ig->stopping) {
        uint64_t n = INGEST_RESYNC_CALL_BYTES / rs->block;
        if (n > WIRE_MAX_SUMS)
            n = WIRE_MAX_SUMS;
        if (n > rs->nblocks - rs->next_block)
            n = rs->nblocks - rs->next_block;
        ig_call_t *call = tm_calloc(1, sizeof *call);
        uint64_t *sums = call ? tm_malloc(n * sizeof *sums) : NULL;
        if (!sums) {
            tm_free(call);
            ig_conn_fail(c, WIRE_E_INTERNAL, "out of memory for block sums");
            return;
        }
        ingest_sums_req_t *q = &call->req;
        snprintf(q->machine, sizeof q->machine, "%s", m->name);
        q->disk = rs->disk;
        snprintf(q->disk_name, sizeof q->disk_name, "%s", m->disks[rs->disk].name);
        q->disk_size = m->disks[rs->disk].size;
        q->block_size = rs->block;
        q->first_block = rs->next_block;
        q->count = (uint32_t)n;
        /* Everything durable when the session was welcomed, at least:
         * the agent compares against a copy that holds its old stream. */
        q->min_seq = m->durable_seq;
        q->sums = sums;
        call->ig = ig;
        call->rs = rs;
        int rc = ig->provider.sums(ig->provider.arg, q);
        if (rc) {
            ig__call_free(call);
            ig_conn_fail(c, WIRE_E_INTERNAL, "cannot compute the block sums of disk %s: %s",
                         m->disks[rs->disk].name, tm_strerror(rc));
            return;
        }
        rs->calls[rs->ncalls++] = call;
        rs->next_block += n;
        ig->sums_inflight++;
    }
}

/* Send the frames of the calls done at the head, in block order. */
static void ig__send_done(ig_conn_t *c)
{
    ig_resync_t *rs = c->rs;
    wire_buf_t b = {0};
    while (rs->ncalls && rs->calls[0]->done) {
        ig_call_t *call = rs->calls[0];
        const ingest_sums_req_t *q = &call->req;
        bool last = q->first_block + q->count >= rs->nblocks;
        wire_resync_sums_t f = {.disk = rs->disk, .flags = last ? WIRE_SUMS_LAST : 0, .block_size = rs->block,
                                .seq = q->seq, .first_block = q->first_block, .count = q->count, .sums = q->sums};
        wire_buf_reset(&b);
        if (wire_enc_resync_sums(&b, &f) != 0 || ig_conn_send(c, &b) != 0) {
            wire_buf_free(&b);
            /* the send may have closed c already; fail is a no-op then */
            ig_conn_fail(c, WIRE_E_INTERNAL, "cannot send block sums");
            return;
        }
        memmove(rs->calls, rs->calls + 1, (rs->ncalls - 1) * sizeof rs->calls[0]);
        rs->ncalls--;
        ig__call_free(call);
        rs->unacked++;
        rs->last_sent = last;
    }
    wire_buf_free(&b);
    ig__pump(c);
}

void ingest_sums_done(ingest_sums_req_t *req)
{
    ig_call_t *call = (ig_call_t *)req;
    ingest_t *ig = call->ig;
    ig_resync_t *rs = call->rs;
    ig->sums_inflight--;
    call->done = true;
    if (!rs) {
        ig__call_free(call);
        ig_maybe_stopped(ig);
        return;
    }
    ig_conn_t *c = rs->conn;
    if (req->status == 0 && req->seq < req->min_seq) {
        req->status = TM_EINVAL;
        snprintf(req->err, sizeof req->err, "they are as of sequence %" PRIu64 ", before the durable %" PRIu64,
                 req->seq, req->min_seq);
    }
    if (req->status != 0) {
        /* frees rs and with it this call (done) */
        ig_conn_fail(c, WIRE_E_INTERNAL, "cannot compute the block sums of disk %s: %s", req->disk_name,
                     req->err[0] ? req->err : tm_strerror(req->status));
        return;
    }
    ig__send_done(c);
}

void ig_resync_request(ig_conn_t *c)
{
    ingest_t *ig = c->ig;
    ig_machine_t *m = c->m;
    wire_resync_request_t q;
    char reason[200], who[160];
    int rc = wire_dec_resync_request(c->dec.body, c->dec.hdr.body_len, &q, reason, sizeof reason);
    if (rc) {
        ig_conn_fail(c, rc, "%s", reason);
        return;
    }
    if (c->rs) {
        ig_conn_fail(c, WIRE_E_PROTOCOL, "a resync of disk %s is already running on this session",
                     m->disks[c->rs->disk].name);
        return;
    }
    if (q.disk >= m->ndisks) {
        ig_conn_fail(c, WIRE_E_RANGE, "resync of disk %u, but the machine has %u", q.disk, m->ndisks);
        return;
    }
    const wire_disk_t *d = &m->disks[q.disk];
    if (!((m->synced >> q.disk) & 1)) {
        ig_conn_fail(c, WIRE_E_PROTOCOL,
                     "resync of disk %s: the appliance holds no full copy of it to compare with (its initial copy "
                     "is not complete); send it whole",
                     d->name);
        return;
    }
    uint64_t nblocks = d->size / q.block_size + (d->size % q.block_size != 0);
    if (q.first_block >= nblocks) {
        ig_conn_fail(c, WIRE_E_RANGE, "resync of disk %s from block %" PRIu64 ", but it has %" PRIu64
                     " blocks of %u bytes", d->name, q.first_block, nblocks, q.block_size);
        return;
    }
    if (!ig->has_provider) {
        ig_conn_fail(c, WIRE_E_INTERNAL, "this server cannot compute block sums: resync is not available");
        return;
    }
    ig_resync_t *rs = tm_calloc(1, sizeof *rs);
    if (!rs) {
        ig_conn_fail(c, WIRE_E_INTERNAL, "out of memory");
        return;
    }
    rs->conn = c;
    rs->disk = q.disk;
    rs->block = q.block_size;
    rs->nblocks = nblocks;
    rs->first_block = rs->next_block = q.first_block;
    c->rs = rs;
    tm_info("ingest: %s: resync of disk %s: block sums of blocks %" PRIu64 "..%" PRIu64 " of %u bytes asked for",
            ig_conn_who(c, who, sizeof who), d->name, q.first_block, nblocks - 1, q.block_size);
    ig__pump(c);
}

void ig_resync_ack(ig_conn_t *c)
{
    uint16_t disk, frames;
    char reason[200], who[160];
    int rc = wire_dec_resync_ack(c->dec.body, c->dec.hdr.body_len, &disk, &frames, reason, sizeof reason);
    if (rc) {
        ig_conn_fail(c, rc, "%s", reason);
        return;
    }
    ig_resync_t *rs = c->rs;
    if (!rs || rs->disk != disk) {
        ig_conn_fail(c, WIRE_E_PROTOCOL, "resync ack for disk %u, but no resync of it is running on this session",
                     disk);
        return;
    }
    if (frames > rs->unacked) {
        ig_conn_fail(c, WIRE_E_PROTOCOL, "resync ack of %u frames, but %u were sent and not acknowledged", frames,
                     rs->unacked);
        return;
    }
    rs->unacked -= frames;
    if (rs->last_sent && rs->unacked == 0 && rs->ncalls == 0) {
        tm_info("ingest: %s: resync of disk %s: block sums of blocks %" PRIu64 "..%" PRIu64 " sent and taken",
                ig_conn_who(c, who, sizeof who), c->m->disks[disk].name, rs->first_block, rs->nblocks - 1);
        ig_resync_release(c);
        return;
    }
    ig__pump(c);
}
