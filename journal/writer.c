/*
 * Appending and group commit.
 *
 * jnl_append() encodes the record straight into the open batch under j->mu
 * (LSN, batch and segment are assigned there, so the record's bytes, its
 * checksum included, are final at once). The writer thread takes batches in
 * order and for each does one pwrite and one fdatasync, then runs the
 * batch's callbacks. A batch is never written before the previous one's
 * sync returned: that is what lets recovery tell a torn tail from corruption
 * (format.h). While the writer syncs, appends fill the next batch, so under
 * load each sync covers everything that arrived during the previous one.
 *
 * Failure policy: any failed call in the writer fails the batch and every
 * queued append with that error, rewinds the LSN counter to the durable end,
 * and leaves the journal failed. The way out is a fresh segment whose header
 * pins the end of the durable log (prev_end), so that whatever the failed
 * writes left in the old segment can never be read as records.
 */
#include <errno.h>
#include <lz4.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "journal/journal_int.h"

#define JNL_BATCH_MIN_CAP (256u << 10)

static jnl_batch_t *jnl__batch_new(jnl_t *j)
{
    jnl_batch_t *b = j->free_batches;
    if (b) {
        j->free_batches = b->next;
    } else {
        b = tm_calloc(1, sizeof *b);
        if (!b)
            return NULL;
    }
    uint8_t *buf = b->buf;
    size_t cap = b->cap;
    memset(b, 0, sizeof *b);
    b->buf = buf;
    b->cap = cap;
    b->reqs_tail = &b->reqs;
    return b;
}

/* Keep a batch buffer for reuse unless it ballooned (Redis aof.c). */
static void jnl__batch_free(jnl_t *j, jnl_batch_t *b)
{
    if (b->cap > 4 * (size_t)j->opt.batch_bytes) {
        tm_free(b->buf);
        b->buf = NULL;
        b->cap = 0;
    }
    b->next = j->free_batches;
    j->free_batches = b;
}

static void jnl__queue_ready(jnl_t *j, jnl_batch_t *b)
{
    b->next = NULL;
    *j->ready_tail = b;
    j->ready_tail = &b->next;
}

static int jnl__reserve(jnl_batch_t *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : JNL_BATCH_MIN_CAP;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *p = tm_realloc(b->buf, cap);
    if (!p)
        return -ENOMEM;
    b->buf = p;
    b->cap = cap;
    return 0;
}

/* Under j->mu: the batch the next record of rec_len bytes goes into,
 * starting a new segment or a new batch where needed. */
static int jnl__batch_for(jnl_t *j, size_t rec_len, jnl_batch_t **out)
{
    bool roll = j->need_roll || j->alloc_off + rec_len > j->alloc_size;
    jnl_batch_t *b = j->open;
    if (b && (roll || (b->len > 0 && b->len + rec_len > j->opt.batch_bytes))) {
        jnl__queue_ready(j, b);
        j->open = b = NULL;
    }
    if (!b) {
        b = jnl__batch_new(j);
        if (!b)
            return -ENOMEM;
        if (roll) {
            b->roll = true;
            b->hdr = (jnl_seg_hdr_t){
                .version = JNL_FORMAT_VERSION,
                .data_off = JNL_SEG_DATA_OFF,
                .segment_size = j->opt.segment_size,
                .seq = j->alloc_seq + 1,
                .journal_id = j->journal_id,
                .salt = tm_random_u64(),
                .first_lsn = j->next_lsn,
                .prev_end = j->alloc_seq ? j->alloc_off : 0,
                .created_ns = tm_now_ns(),
            };
            j->alloc_seq = b->hdr.seq;
            j->alloc_off = JNL_SEG_DATA_OFF;
            j->alloc_size = b->hdr.segment_size;
            j->alloc_salt = b->hdr.salt;
            j->need_roll = false;
        }
        b->seq = j->alloc_seq;
        b->off = j->alloc_off;
        b->first_lsn = j->next_lsn;
        j->open = b;
    }
    int rc = jnl__reserve(b, rec_len);
    if (rc)
        return rc;
    *out = b;
    return 0;
}

int jnl_append(jnl_t *j, jnl_append_req_t *req, uint8_t type, const jnl_buf_t *bufs, unsigned nbufs,
               unsigned flags, jnl_append_cb cb)
{
    if (type == 0 || cb == NULL || (nbufs > 0 && bufs == NULL))
        return TM_EINVAL;
    size_t raw_len = 0;
    for (unsigned i = 0; i < nbufs; i++)
        raw_len += bufs[i].len;
    if (raw_len > j->opt.max_record)
        return TM_ETOOBIG;

    /* Compression runs here, in the caller's thread, before the lock. */
    uint8_t *packed = NULL;
    size_t stored_len = raw_len;
    if ((flags & JNL_APPEND_COMPRESS) && raw_len > 64) {
        uint8_t *flat = NULL;
        const uint8_t *src = bufs[0].base;
        if (nbufs > 1) {
            flat = tm_malloc(raw_len);
            if (!flat)
                return -ENOMEM;
            size_t o = 0;
            for (unsigned i = 0; i < nbufs; i++) {
                if (bufs[i].len)
                    memcpy(flat + o, bufs[i].base, bufs[i].len);
                o += bufs[i].len;
            }
            src = flat;
        }
        int bound = LZ4_compressBound((int)raw_len);
        packed = tm_malloc((size_t)bound);
        int n = packed ? LZ4_compress_default((const char *)src, (char *)packed, (int)raw_len, bound) : 0;
        tm_free(flat);
        if (n > 0 && (size_t)n < raw_len) {
            stored_len = (size_t)n;
        } else {
            tm_free(packed);
            packed = NULL;
        }
    }
    size_t rec_len = JNL_REC_OVERHEAD + stored_len;

    pthread_mutex_lock(&j->mu);
    int rc = 0;
    if (j->closing || j->closed) {
        rc = TM_ECLOSED;
        goto out_unlock;
    }
    if (!j->writer_started) {
        rc = -EROFS; /* opened read_only */
        goto out_unlock;
    }
    if (j->error) {
        uint64_t now = tm_mono_ns();
        if (now - j->last_retry_ns >= (uint64_t)j->opt.retry_ms * 1000000u) {
            j->retry_wanted = true;
            pthread_cond_signal(&j->work_cv);
        }
        rc = TM_EFAILED;
        goto out_unlock;
    }
    jnl_batch_t *b;
    rc = jnl__batch_for(j, rec_len, &b);
    if (rc)
        goto out_unlock;

    uint8_t *rec = b->buf + b->len;
    jnl_rec_hdr_t h = {
        .length = (uint32_t)rec_len,
        .type = type,
        .flags = packed ? JNL_FLAG_LZ4 : 0,
        .lsn = j->next_lsn,
        .time_ns = tm_now_ns(),
        .raw_len = (uint32_t)raw_len,
        .batch_back = (uint32_t)(j->next_lsn - b->first_lsn),
        .salt32 = (uint32_t)j->alloc_salt,
    };
    jnl_rec_hdr_encode(&h, rec);
    if (packed) {
        memcpy(rec + JNL_REC_HDR_LEN, packed, stored_len);
    } else {
        size_t o = JNL_REC_HDR_LEN;
        for (unsigned i = 0; i < nbufs; i++) {
            if (bufs[i].len)
                memcpy(rec + o, bufs[i].base, bufs[i].len);
            o += bufs[i].len;
        }
    }
    jnl_rec_seal(rec, j->alloc_salt);

    req->lsn = j->next_lsn++;
    req->pos = (jnl_pos_t){j->alloc_seq, j->alloc_off};
    req->cb_ = cb;
    req->next_ = NULL;
    *b->reqs_tail = req;
    b->reqs_tail = &req->next_;
    b->len += rec_len;
    b->last_lsn = req->lsn;
    j->alloc_off += rec_len;
    j->queued_bytes += rec_len;
    pthread_cond_signal(&j->work_cv);
out_unlock:
    pthread_mutex_unlock(&j->mu);
    tm_free(packed);
    return rc;
}

/* Writer: write and sync one batch; on success the segment list knows. */
static int jnl__write_batch(jnl_t *j, jnl_batch_t *b)
{
    bool dir_changed = false;
    int rc;
    if (b->roll) {
        int fd = jnl__seg_prepare(j, &b->hdr, &dir_changed);
        if (fd < 0)
            return fd;
        if (j->cur_fd >= 0)
            j->io.close(j->cur_fd);
        j->cur_fd = fd;
        j->cur_seq = b->hdr.seq;
    }
    if (j->cur_fd < 0 || j->cur_seq != b->seq)
        return -EIO; /* cannot happen: a batch follows its segment's roll */
    if (b->len && (rc = jnl__pwrite_full(&j->io, j->cur_fd, b->buf, b->len, b->off)) != 0)
        return rc;
    if (j->io.fdatasync(j->cur_fd) < 0)
        return -errno;
    if (dir_changed && (rc = jnl__fsync_dir(&j->io, j->dir)) != 0)
        return rc;
    return 0;
}

/* Under j->mu: the segment list learns about a segment or its new end. */
static int jnl__note_durable(jnl_t *j, jnl_batch_t *b)
{
    if (b->roll) {
        if (tm_grow((void **)&j->segs, &j->segs_cap, j->nsegs + 1, sizeof *j->segs))
            return -ENOMEM;
        j->segs[j->nsegs++] = (jnl_seg_t){
            .seq = b->hdr.seq,
            .first_lsn = b->hdr.first_lsn,
            .salt = b->hdr.salt,
            .size = b->hdr.segment_size,
            .end = JNL_SEG_DATA_OFF,
        };
    }
    j->segs[j->nsegs - 1].end = b->off + b->len;
    if (b->last_lsn)
        j->durable_lsn = b->last_lsn;
    return 0;
}

/* Under j->mu: fail everything queued with rc; return the list of batches
 * whose callbacks must run (outside the lock). Rewinds allocation to the
 * durable end and demands a fresh segment. */
static jnl_batch_t *jnl__fail_all(jnl_t *j, jnl_batch_t *current, int rc)
{
    jnl_batch_t *list = current;
    jnl_batch_t **tail = &current->next;
    current->next = j->ready;
    while (*tail)
        tail = &(*tail)->next;
    if (j->open) {
        *tail = j->open;
        j->open->next = NULL;
    }
    j->ready = NULL;
    j->ready_tail = &j->ready;
    j->open = NULL;
    j->queued_bytes = 0;
    j->error = rc;
    j->next_lsn = j->durable_lsn + 1;
    if (j->nsegs) {
        j->alloc_seq = j->segs[j->nsegs - 1].seq;
        j->alloc_off = j->segs[j->nsegs - 1].end;
    } else {
        j->alloc_seq = 0;
        j->alloc_off = 0;
    }
    j->need_roll = true;
    return list;
}

static void jnl__complete(jnl_t *j, jnl_batch_t *list, int status)
{
    while (list) {
        jnl_batch_t *b = list;
        list = b->next;
        jnl_append_req_t *r = b->reqs;
        while (r) {
            jnl_append_req_t *next = r->next_;
            r->cb_(r, status);
            r = next;
        }
        pthread_mutex_lock(&j->mu);
        jnl__batch_free(j, b);
        pthread_mutex_unlock(&j->mu);
    }
}

/* Writer, j->mu held on entry and exit: leave the failed state by starting
 * a fresh segment that pins the durable end. */
static void jnl__try_recover(jnl_t *j)
{
    /* In the failed state nothing is queued and allocation sits at the
     * durable end with need_roll set, so this batch is only the roll. */
    jnl_batch_t *rb;
    int rc = jnl__batch_for(j, 0, &rb);
    if (rc == 0) {
        j->open = NULL; /* written here, not by the queue */
        pthread_mutex_unlock(&j->mu);
        rc = jnl__write_batch(j, rb);
        pthread_mutex_lock(&j->mu);
        if (rc == 0)
            rc = jnl__note_durable(j, rb);
        jnl__batch_free(j, rb);
    }
    j->last_retry_ns = tm_mono_ns();
    if (rc == 0) {
        tm_info("journal: recovered from the earlier failure (%s); appends resume in segment %llu",
                tm_strerror(j->error), (unsigned long long)j->alloc_seq);
        j->error = 0;
    } else {
        /* Back to "must roll" from the durable end for the next try. */
        j->alloc_seq = j->nsegs ? j->segs[j->nsegs - 1].seq : 0;
        j->alloc_off = j->nsegs ? j->segs[j->nsegs - 1].end : 0;
        j->need_roll = true;
        tm_warn("journal: still failing (%s); appends are refused until the condition clears", tm_strerror(rc));
    }
    j->recover_result = rc;
}

void *jnl__writer_main(void *arg)
{
    jnl_t *j = arg;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        if (j->recover_requested || (j->retry_wanted && j->error)) {
            j->retry_wanted = false;
            if (j->error)
                jnl__try_recover(j);
            else
                j->recover_result = 0;
            if (j->recover_requested) {
                j->recover_requested = false;
                j->recover_gen++;
            }
            pthread_cond_broadcast(&j->durable_cv);
            continue;
        }
        jnl_batch_t *b = NULL;
        if (j->ready) {
            b = j->ready;
            j->ready = b->next;
            if (!j->ready)
                j->ready_tail = &j->ready;
        } else if (j->open && j->open->reqs) {
            b = j->open;
            j->open = NULL;
        } else if (j->closing) {
            break;
        } else if (j->error) {
            /* Failed: try again on a timer too, so the journal recovers by
             * itself once the condition clears, without an append having to
             * be refused first. */
            struct timespec ts;
            unsigned ms = j->opt.retry_ms ? j->opt.retry_ms : 1000;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += ms / 1000;
            ts.tv_nsec += (long)(ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            if (pthread_cond_timedwait(&j->work_cv, &j->mu, &ts) == ETIMEDOUT)
                j->retry_wanted = true;
            continue;
        } else {
            pthread_cond_wait(&j->work_cv, &j->mu);
            continue;
        }
        b->next = NULL;
        pthread_mutex_unlock(&j->mu);

        int rc = jnl__write_batch(j, b);

        pthread_mutex_lock(&j->mu);
        if (rc == 0)
            rc = jnl__note_durable(j, b);
        if (rc == 0) {
            j->queued_bytes -= b->len;
            j->n_batches++;
            j->n_bytes += b->len;
            j->n_appends += b->last_lsn - b->first_lsn + 1;
            pthread_cond_broadcast(&j->durable_cv);
            pthread_mutex_unlock(&j->mu);
            jnl__complete(j, b, 0);
        } else {
            tm_error("journal: writing segment %llu at offset %llu failed: %s; %llu append(s) fail",
                     (unsigned long long)b->seq, (unsigned long long)b->off, tm_strerror(rc),
                     (unsigned long long)(j->next_lsn - b->first_lsn));
            if (j->cur_fd >= 0) {
                j->io.close(j->cur_fd);
                j->cur_fd = -1;
            }
            jnl_batch_t *failed = jnl__fail_all(j, b, rc);
            pthread_mutex_unlock(&j->mu);
            jnl__complete(j, failed, rc);
            pthread_mutex_lock(&j->mu);
            if (!j->closing)
                jnl__try_recover(j);
            pthread_cond_broadcast(&j->durable_cv);
            pthread_mutex_unlock(&j->mu);
        }
        pthread_mutex_lock(&j->mu);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}
