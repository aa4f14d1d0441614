/* The journal's lifetime (open, close), its waits, statistics and
 * retirement. Appending is in writer.c, reading in reader.c. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "journal/journal_int.h"

static int jnl__check_options(jnl_options_t *o)
{
    if (!o->segment_size)
        o->segment_size = JNL_DEFAULT_SEGMENT;
    if (!o->max_record)
        o->max_record = JNL_DEFAULT_MAX_RECORD;
    if (!o->batch_bytes)
        o->batch_bytes = JNL_DEFAULT_BATCH;
    if (o->segment_size < JNL_MIN_SEGMENT || o->max_record > JNL_HARD_MAX_RECORD)
        return TM_EINVAL;
    /* Any record must fit in an empty segment. */
    if ((uint64_t)o->max_record + JNL_REC_OVERHEAD > o->segment_size - JNL_SEG_DATA_OFF)
        return TM_EINVAL;
    return 0;
}

static void jnl__free(jnl_t *j)
{
    while (j->free_batches) {
        jnl_batch_t *b = j->free_batches;
        j->free_batches = b->next;
        tm_free(b->buf);
        tm_free(b);
    }
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->work_cv);
    pthread_cond_destroy(&j->durable_cv);
    tm_free(j->segs);
    tm_free(j->spares);
    tm_free(j->dir);
    tm_free(j);
}

int jnl_open(const char *dir, const jnl_options_t *opts, jnl_t **out)
{
    jnl_t *j = tm_calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    if (opts)
        j->opt = *opts;
    if (!j->opt.spare_segments)
        j->opt.spare_segments = 2;
    int rc = jnl__check_options(&j->opt);
    if (rc) {
        tm_free(j);
        return rc;
    }
    jnl__io_resolve(&j->io, j->opt.io);
    j->opt.io = NULL;
    j->cur_fd = -1;
    j->ready_tail = &j->ready;
    pthread_mutex_init(&j->mu, NULL);
    /* Timed waits measure on the monotonic clock: a wall-clock step must
     * not stretch or cut a timeout. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->durable_cv, &ca);
    pthread_cond_init(&j->work_cv, &ca);
    pthread_condattr_destroy(&ca);
    j->dir = tm_strdup(dir);
    if (!j->dir) {
        rc = -ENOMEM;
        goto out_free;
    }
    if (!j->opt.read_only && mkdir(dir, 0700) < 0 && errno != EEXIST) {
        rc = -errno;
        tm_error("journal: cannot create %s: %s", dir, tm_strerror(rc));
        goto out_free;
    }
    rc = jnl__recover(j);
    if (rc)
        goto out_free;
    if (!j->opt.read_only) {
        rc = -pthread_create(&j->writer, NULL, jnl__writer_main, j);
        if (rc)
            goto out_free;
        j->writer_started = true;
    }
    *out = j;
    return 0;
out_free:
    jnl__free(j);
    return rc;
}

void jnl_close(jnl_t *j)
{
    pthread_mutex_lock(&j->mu);
    if (j->closed || j->closing) {
        pthread_mutex_unlock(&j->mu);
        return;
    }
    j->closing = true;
    pthread_cond_signal(&j->work_cv);
    pthread_mutex_unlock(&j->mu);
    if (j->writer_started)
        pthread_join(j->writer, NULL);
    pthread_mutex_lock(&j->mu);
    if (j->cur_fd >= 0) {
        j->io.close(j->cur_fd);
        j->cur_fd = -1;
    }
    j->closed = true;
    pthread_cond_broadcast(&j->durable_cv);
    pthread_mutex_unlock(&j->mu);
}

void jnl_destroy(jnl_t *j)
{
    if (!j)
        return;
    jnl_close(j);
    jnl__free(j);
}

static void jnl__deadline(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int jnl_wait_durable(jnl_t *j, uint64_t lsn, int timeout_ms)
{
    struct timespec deadline;
    if (timeout_ms >= 0)
        jnl__deadline(&deadline, timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&j->mu);
    while (j->durable_lsn < lsn) {
        if (j->closed) {
            rc = TM_ECLOSED;
            break;
        }
        if (timeout_ms < 0) {
            pthread_cond_wait(&j->durable_cv, &j->mu);
        } else if (pthread_cond_timedwait(&j->durable_cv, &j->mu, &deadline) == ETIMEDOUT) {
            rc = j->durable_lsn >= lsn ? 0 : -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

typedef struct jnl_waiter {
    jnl_append_req_t req;
    jnl_t *j;
    bool done;
    int status;
} jnl_waiter_t;

static void jnl__waiter_cb(jnl_append_req_t *req, int status)
{
    jnl_waiter_t *w = req->data;
    pthread_mutex_lock(&w->j->mu);
    w->done = true;
    w->status = status;
    pthread_cond_broadcast(&w->j->durable_cv);
    pthread_mutex_unlock(&w->j->mu);
}

int jnl_append_wait(jnl_t *j, uint8_t type, const void *payload, size_t len, unsigned flags, uint64_t *lsn_out)
{
    jnl_waiter_t w = {.j = j};
    w.req.data = &w;
    jnl_buf_t buf = {payload, len};
    int rc = jnl_append(j, &w.req, type, &buf, 1, flags, jnl__waiter_cb);
    if (rc)
        return rc;
    pthread_mutex_lock(&j->mu);
    while (!w.done)
        pthread_cond_wait(&j->durable_cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    if (w.status == 0 && lsn_out)
        *lsn_out = w.req.lsn;
    return w.status;
}

int jnl_recover(jnl_t *j)
{
    pthread_mutex_lock(&j->mu);
    if (j->closing || j->closed || !j->writer_started) {
        pthread_mutex_unlock(&j->mu);
        return TM_ECLOSED;
    }
    if (!j->error) {
        pthread_mutex_unlock(&j->mu);
        return 0;
    }
    uint64_t gen = j->recover_gen;
    j->recover_requested = true;
    pthread_cond_signal(&j->work_cv);
    while (j->recover_gen == gen && !j->closed)
        pthread_cond_wait(&j->durable_cv, &j->mu);
    int rc = j->error ? j->recover_result : 0;
    if (rc == 0 && j->error)
        rc = j->error;
    pthread_mutex_unlock(&j->mu);
    return rc;
}

void jnl_get_stats(jnl_t *j, jnl_stats_t *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&j->mu);
    st->journal_id = j->journal_id;
    st->first_lsn = j->nsegs ? j->segs[0].first_lsn : j->next_lsn;
    st->durable_lsn = j->durable_lsn;
    st->next_lsn = j->next_lsn;
    st->segments = j->nsegs;
    st->spares = j->nspares;
    st->appends = j->n_appends;
    st->batches = j->n_batches;
    st->bytes_written = j->n_bytes;
    st->queued_bytes = j->queued_bytes;
    st->error = j->error;
    st->end_kind = j->end_kind;
    st->end_pos = j->end_pos;
    memcpy(st->end_reason, j->end_reason, sizeof st->end_reason);
    st->torn_records = j->torn_records;
    pthread_mutex_unlock(&j->mu);
    st->disk_bytes = jnl__disk_bytes(j->dir);
}

int jnl_retire(jnl_t *j, uint64_t below, unsigned *dropped)
{
    if (dropped)
        *dropped = 0;
    pthread_mutex_lock(&j->mu);
    if (j->closed || j->closing || j->opt.read_only) {
        pthread_mutex_unlock(&j->mu);
        return j->opt.read_only ? -EROFS : TM_ECLOSED;
    }
    size_t k = 0;
    while (k + 1 < j->nsegs && j->segs[k + 1].first_lsn <= below)
        k++;
    uint64_t first_seq = j->nsegs ? j->segs[0].seq : 0;
    memmove(j->segs, j->segs + k, (j->nsegs - k) * sizeof *j->segs);
    j->nsegs -= k;
    pthread_mutex_unlock(&j->mu);

    int rc = 0;
    for (size_t i = 0; i < k; i++) {
        uint64_t seq = first_seq + i;
        char *path = jnl__path(j->dir, JNL_SEG_NAME_FMT, seq);
        if (!path) {
            rc = -ENOMEM;
            break;
        }
        pthread_mutex_lock(&j->mu);
        bool keep = j->nspares < j->opt.spare_segments;
        uint64_t spare_id = j->next_spare_id;
        if (keep && tm_grow((void **)&j->spares, &j->spares_cap, j->nspares + 1, sizeof *j->spares))
            keep = false;
        if (keep)
            j->next_spare_id++;
        pthread_mutex_unlock(&j->mu);

        char *spath = keep ? jnl__path(j->dir, JNL_SPARE_NAME_FMT, spare_id) : NULL;
        if (keep && spath && j->io.rename(path, spath) == 0) {
            pthread_mutex_lock(&j->mu);
            j->spares[j->nspares++] = spare_id;
            pthread_mutex_unlock(&j->mu);
        } else if (j->io.unlink(path) < 0 && errno != ENOENT) {
            rc = -errno;
            tm_warn("journal: cannot remove retired segment %llu: %s", (unsigned long long)seq, tm_strerror(rc));
        }
        tm_free(spath);
        tm_free(path);
        if (dropped)
            (*dropped)++;
    }
    if (k > 0) {
        int src = jnl__fsync_dir(&j->io, j->dir);
        if (src && !rc)
            rc = src;
    }
    return rc;
}
