/* The agent's resync state and its block sums; the rules are in resync.h. */
#include "agent/resync.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

struct agent_rs_frame {
    uint64_t first_block;
    uint32_t count;
    uint32_t used;  /* sums handed out */
    uint64_t sums[];
};

int agent_resync_init(agent_resync_t *rs, unsigned ndisks, const uint64_t *sizes)
{
    memset(rs, 0, sizeof *rs);
    rs->active = -1;
    rs->d = tm_calloc(ndisks ? ndisks : 1, sizeof *rs->d);
    if (!rs->d)
        return -ENOMEM;
    rs->ndisks = ndisks;
    for (unsigned i = 0; i < ndisks; i++) {
        agent_rs_disk_t *d = &rs->d[i];
        d->size = sizes[i];
        /* A bigger block for a disk whose map would pass its bound. */
        d->block = AGENT_RESYNC_BLOCK;
        while (d->block < WIRE_RESYNC_MAX_BLOCK && (d->size + d->block - 1) / d->block > AGENT_RESYNC_MAP_BITS)
            d->block *= 2;
        d->nblocks = (d->size + d->block - 1) / d->block;
    }
    return 0;
}

static void rs_drop_frames(agent_rs_disk_t *d)
{
    for (unsigned i = 0; i < d->nframes; i++)
        tm_free(d->frames[i]);
    d->nframes = 0;
}

void agent_resync_free(agent_resync_t *rs)
{
    for (unsigned i = 0; rs->d && i < rs->ndisks; i++) {
        rs_drop_frames(&rs->d[i]);
        tm_free(rs->d[i].dirty);
    }
    tm_free(rs->d);
    memset(rs, 0, sizeof *rs);
}

int agent_resync_track(agent_resync_t *rs, uint16_t i)
{
    agent_rs_disk_t *d = &rs->d[i];
    if (!d->dirty && !(d->dirty = tm_calloc(1, (size_t)(d->nblocks + 7) / 8)))
        return -ENOMEM;
    return 0;
}

int agent_resync_want(agent_resync_t *rs, uint16_t i)
{
    agent_rs_disk_t *d = &rs->d[i];
    /* the marks made so far stay: every record of this process counts */
    int rc = agent_resync_track(rs, i);
    if (rc)
        return rc;
    rs_drop_frames(d);
    d->state = AGENT_RS_WAITING;
    d->next_block = 0;
    d->differed = d->sent_bytes = 0;
    if (rs->active == (int)i)
        rs->active = -1;
    return 0;
}

void agent_resync_mark(agent_resync_t *rs, uint16_t i, uint64_t off, uint64_t len)
{
    agent_rs_disk_t *d = &rs->d[i];
    if (!d->dirty || len == 0)
        return;
    uint64_t a = off / d->block, b = (off + len - 1) / d->block;
    for (uint64_t k = a; k <= b && k < d->nblocks; k++)
        d->dirty[k / 8] |= (uint8_t)(1u << (k % 8));
}

bool agent_resync_dirty(const agent_resync_t *rs, uint16_t i, uint64_t block)
{
    const agent_rs_disk_t *d = &rs->d[i];
    return d->dirty && block < d->nblocks && (d->dirty[block / 8] >> (block % 8)) & 1;
}

static void rs_off(agent_rs_disk_t *d)
{
    rs_drop_frames(d);
    tm_free(d->dirty);
    d->dirty = NULL;
    d->state = AGENT_RS_OFF;
}

void agent_resync_welcome(agent_resync_t *rs, const wire_welcome_t *w)
{
    rs->active = -1; /* nothing is asked for in a new session */
    for (unsigned i = 0; i < rs->ndisks && i < w->ndisks; i++) {
        agent_rs_disk_t *d = &rs->d[i];
        d->synced_here = w->disk_state[i] == WIRE_DISK_SYNCED;
        rs_drop_frames(d);
        if (d->state == AGENT_RS_RUNNING)
            d->state = AGENT_RS_WAITING;
        /* A disk the appliance holds no copy of is sent whole: nothing to
         * compare with, and the copy's SYNCED ends the resync too. */
        if ((!d->synced_here && d->state == AGENT_RS_WAITING) || d->state == AGENT_RS_OFF)
            rs_off(d);
    }
}

void agent_resync_kick(agent_resync_t *rs)
{
    if (rs->active >= 0 || !rs->client)
        return;
    for (unsigned i = 0; i < rs->ndisks; i++) {
        agent_rs_disk_t *d = &rs->d[i];
        if (d->state != AGENT_RS_WAITING || !d->synced_here)
            continue;
        wire_resync_request_t q = {.disk = (uint16_t)i, .block_size = d->block, .first_block = d->next_block};
        if (agent_client_resync_request(rs->client, &q) != 0)
            return; /* no session: the next WELCOME asks */
        tm_info("tap: disk %s: resync: asked the appliance for the sums of blocks %" PRIu64 "..%" PRIu64
                " of %u KiB", rs->names[i], d->next_block, d->nblocks - 1, d->block >> 10);
        d->state = AGENT_RS_RUNNING;
        d->expect_block = d->next_block;
        rs->active = (int)i;
        return;
    }
}

int agent_resync_on_sums(agent_resync_t *rs, const wire_resync_sums_t *m, char *why, size_t wlen)
{
    if (rs->active < 0 || m->disk != (unsigned)rs->active) {
        snprintf(why, wlen, "block sums of disk %u, which this agent did not ask for", m->disk);
        return -1;
    }
    agent_rs_disk_t *d = &rs->d[m->disk];
    if (m->block_size != d->block || m->first_block != d->expect_block || m->count == 0 ||
        m->first_block + m->count > d->nblocks) {
        snprintf(why, wlen,
                 "block sums of disk %u: %u sums of %u bytes from block %" PRIu64 ", expected blocks of %u from %" PRIu64
                 " (of %" PRIu64 ")",
                 m->disk, m->count, m->block_size, m->first_block, d->block, d->expect_block, d->nblocks);
        return -1;
    }
    bool last = m->first_block + m->count == d->nblocks;
    if (last != ((m->flags & WIRE_SUMS_LAST) != 0)) {
        snprintf(why, wlen, "block sums of disk %u up to block %" PRIu64 " %s the last", m->disk,
                 m->first_block + m->count - 1, last ? "are not marked" : "are marked");
        return -1;
    }
    if (d->nframes == WIRE_RESYNC_WINDOW) {
        snprintf(why, wlen, "more than %u frames of block sums unacknowledged", WIRE_RESYNC_WINDOW);
        return -1;
    }
    agent_rs_frame_t *f = tm_malloc(sizeof *f + (size_t)m->count * sizeof f->sums[0]);
    if (!f) {
        snprintf(why, wlen, "out of memory for block sums");
        return -1;
    }
    f->first_block = m->first_block;
    f->count = m->count;
    f->used = 0;
    for (uint32_t i = 0; i < m->count; i++)
        f->sums[i] = wire_sums_get(m, i);
    d->frames[d->nframes++] = f;
    d->expect_block += m->count;
    return 0;
}

bool agent_resync_next(agent_resync_t *rs, agent_rs_item_t *it)
{
    if (rs->active < 0)
        return false;
    uint16_t i = (uint16_t)rs->active;
    agent_rs_disk_t *d = &rs->d[i];
    if (d->state != AGENT_RS_RUNNING || d->nframes == 0)
        return false;
    agent_rs_frame_t *f = d->frames[0];
    uint32_t n = f->count - f->used, max = AGENT_RESYNC_ITEM_BYTES / d->block;
    if (n > max)
        n = max;
    it->disk = i;
    it->block = d->block;
    it->first_block = f->first_block + f->used;
    it->count = n;
    memcpy(it->sums, f->sums + f->used, n * sizeof it->sums[0]);
    it->off = it->first_block * d->block;
    uint64_t end = (it->first_block + n) * d->block;
    it->len = (end > d->size ? d->size : end) - it->off;
    it->last = it->first_block + n == d->nblocks;
    f->used += n;
    d->next_block = it->first_block + n;
    if (f->used == f->count) {
        tm_free(f);
        memmove(d->frames, d->frames + 1, (d->nframes - 1) * sizeof d->frames[0]);
        d->nframes--;
        /* a lost session is fine: the next one asks from next_block */
        agent_client_resync_ack(rs->client, i, 1);
    }
    if (it->last) {
        d->state = AGENT_RS_FINISHING;
        rs->active = -1;
        agent_resync_kick(rs);
    }
    return true;
}

void agent_resync_item_done(agent_resync_t *rs, const agent_rs_item_t *it, uint64_t differed, uint64_t bytes,
                            uint64_t acked_target)
{
    agent_rs_disk_t *d = &rs->d[it->disk];
    d->differed += differed;
    d->sent_bytes += bytes;
    if (it->last && d->state == AGENT_RS_FINISHING) {
        d->state = AGENT_RS_QUEUED;
        d->target = acked_target;
    }
}

void agent_resync_retry(agent_resync_t *rs, const agent_rs_item_t *it)
{
    agent_rs_disk_t *d = &rs->d[it->disk];
    rs_drop_frames(d);
    d->next_block = it->first_block;
    d->state = AGENT_RS_WAITING;
    if (rs->active == (int)it->disk)
        rs->active = -1;
}

bool agent_resync_acked(agent_resync_t *rs, uint64_t acked_count)
{
    bool any = false;
    for (unsigned i = 0; i < rs->ndisks; i++) {
        agent_rs_disk_t *d = &rs->d[i];
        if (d->state != AGENT_RS_QUEUED || d->target > acked_count)
            continue;
        tm_info("tap: disk %s: resync complete and durable at the appliance: %" PRIu64 " of %" PRIu64
                " blocks of %u KiB differed (%" PRIu64 " bytes sent)",
                rs->names[i], d->differed, d->nblocks, d->block >> 10, d->sent_bytes);
        rs_off(d);
        any = true;
    }
    return any;
}
