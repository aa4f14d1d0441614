/*
 * Block sums for an agent's resync, from the appliance's copy of its disk.
 *
 * A call runs on libuv's thread pool: wait until the points stage has
 * processed everything durable (pts_sync), take the machine's last
 * processed sequence, pin it so that retention does not fold past it while
 * it is read, and read the requested blocks through target/'s reader at
 * that sequence, hashing each. No point is cut: the position may lie inside
 * a resync (the agent's RESYNC record comes before its request), where a
 * point must not be, and reading at a sequence needs none.
 */
#include "cli/serve_resync.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "base/err.h"
#include "base/mem.h"
#include "target/reader.h"

typedef struct cli_resync {
    uv_loop_t *loop;
    pts_t *pts;
    jnl_t *jnl;
    ingest_resync_provider_t prov;
    /* calls on the pool use pts: cli_resync_stop waits for them */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned active;
    bool stopping;
} cli_resync_t;

typedef struct cli_sums_work {
    uv_work_t work;
    cli_resync_t *r;
    ingest_sums_req_t *req;
} cli_sums_work_t;

static cli_resync_t cli__resync;

/* The worker thread: fill q->sums, or say why not. */
static int cli__sums(cli_resync_t *r, ingest_sums_req_t *q)
{
    int rc = pts_sync(r->pts, CLI_RESYNC_SYNC_MS);
    if (rc) {
        snprintf(q->err, sizeof q->err, "the points stage has not processed the journal: %s", tm_strerror(rc));
        return rc;
    }
    pts_machine_t m;
    rc = pts_machine(r->pts, q->machine, &m);
    if (rc) {
        snprintf(q->err, sizeof q->err, "the points stage does not know machine %s: %s", q->machine,
                 tm_strerror(rc));
        return rc;
    }
    if (q->disk >= m.ndisks || m.disks[q->disk].size != q->disk_size) {
        snprintf(q->err, sizeof q->err, "the points stage knows disk %u of machine %s otherwise", q->disk, m.name);
        return TM_EINVAL;
    }
    if (pts_pin(r->pts, m.id, m.seq) != 0) {
        snprintf(q->err, sizeof q->err, "sequence %" PRIu64 " of machine %s is past the retention horizon", m.seq,
                 m.name);
        return TM_ENOPOINT;
    }
    char base[4096];
    pts_base_path(r->pts, m.name, m.disks[q->disk].name, base, sizeof base);
    tgt_view_t v = {.ix = pts_index(r->pts), .jnl = r->jnl, .machine = m.name, .mid = m.id, .disk = q->disk,
                    .disk_name = m.disks[q->disk].name, .size = q->disk_size, .seq = m.seq, .base_path = base};
    tgt_reader_t *rd = NULL;
    uint8_t *buf = tm_malloc(CLI_RESYNC_PIECE);
    rc = buf ? tgt_open(&v, &rd) : -ENOMEM;
    if (rc) {
        snprintf(q->err, sizeof q->err, "cannot read the disk: %s", tm_strerror(rc));
        goto out_unpin;
    }
    uint64_t off = q->first_block * q->block_size;
    uint64_t end = (q->first_block + q->count) * (uint64_t)q->block_size;
    if (end > q->disk_size)
        end = q->disk_size;
    uint32_t i = 0;
    while (off < end) {
        if (__atomic_load_n(&r->stopping, __ATOMIC_RELAXED)) {
            rc = TM_ECLOSED;
            snprintf(q->err, sizeof q->err, "the appliance is stopping");
            goto out_close;
        }
        size_t n = end - off < CLI_RESYNC_PIECE ? (size_t)(end - off) : CLI_RESYNC_PIECE;
        rc = tgt_read(rd, off, buf, n, NULL);
        if (rc) {
            snprintf(q->err, sizeof q->err, "%s", tgt_error(rd)[0] ? tgt_error(rd) : tm_strerror(rc));
            goto out_close;
        }
        /* a piece is whole blocks, but for the disk's short last one */
        for (size_t at = 0; at < n; at += q->block_size) {
            size_t bl = n - at < q->block_size ? n - at : q->block_size;
            q->sums[i++] = XXH3_64bits(buf + at, bl);
        }
        off += n;
    }
    q->seq = m.seq;
    rc = i == q->count ? 0 : TM_EINVAL;
    if (rc)
        snprintf(q->err, sizeof q->err, "%u blocks read where %u were asked for", i, q->count);
out_close:
    tgt_close(rd);
out_unpin:
    tm_free(buf);
    pts_unpin(r->pts, m.id, m.seq);
    return rc;
}

static void cli__work(uv_work_t *w)
{
    cli_sums_work_t *s = w->data;
    cli_resync_t *r = s->r;
    pthread_mutex_lock(&r->mu);
    bool go = !r->stopping;
    if (go)
        r->active++;
    pthread_mutex_unlock(&r->mu);
    if (!go) {
        s->req->status = TM_ECLOSED;
        snprintf(s->req->err, sizeof s->req->err, "the appliance is stopping");
        return;
    }
    s->req->status = cli__sums(r, s->req);
    pthread_mutex_lock(&r->mu);
    if (--r->active == 0)
        pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void cli__after(uv_work_t *w, int status)
{
    cli_sums_work_t *s = w->data;
    ingest_sums_req_t *q = s->req;
    tm_free(s);
    if (status != 0 && q->status == 0) {
        q->status = status; /* cancelled: never ran */
        snprintf(q->err, sizeof q->err, "%s", uv_strerror(status));
    }
    ingest_sums_done(q);
}

static int cli__start(void *arg, ingest_sums_req_t *q)
{
    cli_resync_t *r = arg;
    cli_sums_work_t *s = tm_calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->r = r;
    s->req = q;
    s->work.data = s;
    int rc = uv_queue_work(r->loop, &s->work, cli__work, cli__after);
    if (rc)
        tm_free(s);
    return rc;
}

const ingest_resync_provider_t *cli_resync_provider(uv_loop_t *loop, pts_t *pts, jnl_t *jnl)
{
    cli__resync = (cli_resync_t){.loop = loop, .pts = pts, .jnl = jnl};
    pthread_mutex_init(&cli__resync.mu, NULL);
    pthread_cond_init(&cli__resync.cv, NULL);
    cli__resync.prov = (ingest_resync_provider_t){.sums = cli__start, .arg = &cli__resync};
    return &cli__resync.prov;
}

void cli_resync_stop(void)
{
    cli_resync_t *r = &cli__resync;
    if (!r->pts)
        return;
    pthread_mutex_lock(&r->mu);
    __atomic_store_n(&r->stopping, true, __ATOMIC_RELAXED);
    while (r->active)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}
