/*
 * Appending ingest-format batches into a journal the way ingest does: each
 * RECORDS body behind ingest's batch header as one journal record of type
 * 1, flags 0 (ingest/record.h), several appends outstanding so the journal
 * groups them into one write + fdatasync, the way many agents' frames
 * arrive. The submitter is this thread; completions come back on the
 * journal's writer thread and only free their slot.
 */
#include "bench/points/bp.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "ingest/record.h"
#include "wire/msg.h"

typedef struct bp_slot {
    jnl_append_req_t req; /* req.data points back here */
    struct bp_feeder *f;
    struct bp_slot *next_free;
} bp_slot_t;

typedef struct bp_feeder {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bp_slot_t *free; /* under mu */
    unsigned busy;   /* under mu */
    int error;       /* under mu: the first failed append */
    uint64_t t_last; /* under mu: when the last completion came */
} bp_feeder_t;

static void bp__on_durable(jnl_append_req_t *req, int status)
{
    bp_slot_t *s = req->data;
    bp_feeder_t *f = s->f;
    uint64_t now = tm_mono_ns();
    pthread_mutex_lock(&f->mu);
    if (status != 0 && f->error == 0)
        f->error = status;
    s->next_free = f->free;
    f->free = s;
    f->busy--;
    f->t_last = now;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

int bp_append_disks(jnl_t *j, const char *machine, const char *disk, uint64_t size)
{
    uint8_t rec[INGEST_DISKS_MAX];
    wire_disk_t d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "%s", disk);
    d.size = size;
    size_t n = ingest_rec_disks_encode(rec, machine, &d, 1);
    int rc = jnl_append_wait(j, INGEST_REC_DISKS, rec, n, 0, NULL);
    if (rc) {
        fprintf(stderr, "bench_points: appending the disks record: %s\n", tm_strerror(rc));
        return rc;
    }
    /* Sequence 1: the disk's SYNCED (the initial copy of an empty disk), so
     * that the machine is consistent and points are cut from then on. */
    wire_entry_t e = {.kind = WIRE_R_SYNCED, .disk = 0};
    wire_buf_t b = {0};
    uint8_t hdr[INGEST_BATCH_HDR_MAX];
    size_t hl = ingest_rec_batch_header(hdr, tm_now_ns(), machine);
    if (wire_enc_records(&b, 1, &e, 1, false) != 0) {
        wire_buf_free(&b);
        return -ENOMEM;
    }
    jnl_buf_t parts[2] = {{hdr, hl}, {b.data + WIRE_HDR_LEN, b.len - WIRE_HDR_LEN}};
    uint8_t *one = tm_malloc(parts[0].len + parts[1].len);
    if (!one) {
        wire_buf_free(&b);
        return -ENOMEM;
    }
    memcpy(one, parts[0].base, parts[0].len);
    memcpy(one + parts[0].len, parts[1].base, parts[1].len);
    rc = jnl_append_wait(j, INGEST_REC_BATCH, one, parts[0].len + parts[1].len, 0, NULL);
    tm_free(one);
    wire_buf_free(&b);
    if (rc)
        fprintf(stderr, "bench_points: appending the disk's SYNCED: %s\n", tm_strerror(rc));
    return rc;
}

int bp_feed(jnl_t *j, const char *machine, unsigned inflight, bp_next_fn next, void *arg, uint64_t *seq,
            bp_feed_result_t *out)
{
    bp_feeder_t f;
    jnl_stats_t s0, s1;
    uint8_t hdr[INGEST_BATCH_HDR_MAX];
    int rc = 0;

    memset(out, 0, sizeof *out);
    memset(&f, 0, sizeof f);
    bp_slot_t *slots = tm_calloc(inflight, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    for (unsigned i = 0; i < inflight; i++) {
        slots[i].req.data = &slots[i];
        slots[i].f = &f;
        slots[i].next_free = f.free;
        f.free = &slots[i];
    }

    jnl_get_stats(j, &s0);
    uint64_t t0 = tm_mono_ns();
    for (;;) {
        bp_batch_t b;
        rc = next(arg, *seq, &b);
        if (rc == 1) {
            rc = 0;
            break;
        }
        if (rc != 0)
            break;
        pthread_mutex_lock(&f.mu);
        while (!f.free && f.error == 0)
            pthread_cond_wait(&f.cv, &f.mu);
        rc = f.error;
        bp_slot_t *s = f.free;
        if (rc == 0) {
            f.free = s->next_free;
            f.busy++;
        }
        pthread_mutex_unlock(&f.mu);
        if (rc != 0 || bj_interrupted)
            break;
        /* ingest stamps each frame with the time it took it */
        size_t hl = ingest_rec_batch_header(hdr, tm_now_ns(), machine);
        jnl_buf_t bufs[2] = {{hdr, hl}, {b.body, b.len}};
        rc = jnl_append(j, &s->req, INGEST_REC_BATCH, bufs, 2, 0, bp__on_durable);
        if (rc != 0) {
            pthread_mutex_lock(&f.mu);
            s->next_free = f.free;
            f.free = s;
            f.busy--;
            pthread_mutex_unlock(&f.mu);
            fprintf(stderr, "bench_points: jnl_append: %s\n", tm_strerror(rc));
            break;
        }
        *seq += b.count;
        out->batches++;
        out->writes += b.count;
        out->raw_bytes += b.raw_bytes;
    }

    /* Every append made so far completes whatever happened above. */
    pthread_mutex_lock(&f.mu);
    while (f.busy > 0)
        pthread_cond_wait(&f.cv, &f.mu);
    if (rc == 0)
        rc = f.error;
    uint64_t t_last = f.t_last;
    pthread_mutex_unlock(&f.mu);
    if (rc == 0 && bj_interrupted)
        rc = -EINTR;
    if (rc != 0 && rc != -EINTR)
        fprintf(stderr, "bench_points: feeding the journal: %s\n", tm_strerror(rc));

    jnl_get_stats(j, &s1);
    out->secs = t_last > t0 ? (double)(t_last - t0) / 1e9 : 0;
    out->jnl_bytes = s1.bytes_written - s0.bytes_written;
    out->fsyncs = s1.batches - s0.batches;

    pthread_cond_destroy(&f.cv);
    pthread_mutex_destroy(&f.mu);
    tm_free(slots);
    return rc;
}
