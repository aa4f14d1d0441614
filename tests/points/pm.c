/* The workload and reference model of pm.h. */
#include "pm.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "ingest/record.h"
#include "journal/format.h"
#include "points/index.h"
#include "points/points.h"

void pm_init(pm_t *m, uint64_t seed, const char *machine, uint64_t t0_ns, uint64_t step_ns)
{
    memset(m, 0, sizeof *m);
    m->seed = seed;
    tmt_rng_seed(&m->rng, seed);
    snprintf(m->machine, sizeof m->machine, "%s", machine);
    m->ndisks = 3;
    /* one chunk and a bit, several chunks, and one under a chunk */
    static const uint64_t sizes[] = {(1u << 20) + 64 * 1024, 3u << 20, 768 * 1024};
    for (unsigned d = 0; d < m->ndisks; d++) {
        snprintf(m->disks[d].name, sizeof m->disks[d].name, "disk%u", d);
        m->disks[d].size = sizes[d];
    }
    m->ops = calloc(PM_MAX_OPS, sizeof *m->ops);
    m->batches = calloc(PM_MAX_OPS, sizeof *m->batches);
    cr_assert(m->ops && m->batches);
    m->next_ns = t0_ns;
    m->step_ns = step_ns;
}

void pm_free(pm_t *m)
{
    free(m->ops);
    free(m->batches);
}

void pm_append_disks(pm_t *m, jnl_t *j)
{
    uint8_t rec[INGEST_DISKS_MAX];
    size_t n = ingest_rec_disks_encode(rec, m->machine, m->disks, (uint16_t)m->ndisks);
    cr_assert_eq(jnl_append_wait(j, INGEST_REC_DISKS, rec, n, 0, NULL), 0);
}

/* A sector-aligned range on disk d, often in a small hot area so that
 * writes overlap and cross chunk boundaries. */
static void pm_range(pm_t *m, unsigned d, uint32_t max_len, uint64_t *off, uint32_t *len)
{
    uint64_t sectors = m->disks[d].size / WIRE_SECTOR;
    uint64_t l = tmt_rng_range(&m->rng, 1, max_len / WIRE_SECTOR);
    if (l > sectors)
        l = sectors;
    uint64_t start;
    if (tmt_rng_range(&m->rng, 0, 2) == 0) {
        /* around the first chunk boundary (1 MiB) when the disk has one */
        uint64_t hot = (1u << 20) / WIRE_SECTOR;
        uint64_t lo = hot > 64 ? hot - 64 : 0;
        start = tmt_rng_range(&m->rng, lo, hot + 64);
    } else {
        start = tmt_rng_range(&m->rng, 0, sectors - 1);
    }
    if (start + l > sectors)
        start = sectors - l;
    *off = start * WIRE_SECTOR;
    *len = (uint32_t)(l * WIRE_SECTOR);
}

/* Encode count entries from sequence nops + 1 as an agent does and append
 * them as ingest does: its batch header, then the RECORDS body as sent. */
static void pm__append(pm_t *m, jnl_t *j, const wire_entry_t *e, unsigned count, bool compress)
{
    wire_buf_t b = {0};
    uint64_t first = m->nops + 1;
    cr_assert_eq(wire_enc_records(&b, first, e, (uint16_t)count, compress), 0);
    pm_batch_t *bt = &m->batches[m->nbatches++];
    bt->first_seq = first;
    bt->last_seq = first + count - 1;
    bt->recv_ns = m->next_ns;
    m->next_ns += m->step_ns;
    uint8_t hdr[INGEST_BATCH_HDR_MAX];
    size_t hl = ingest_rec_batch_header(hdr, bt->recv_ns, m->machine);
    size_t body = b.len - WIRE_HDR_LEN;
    uint8_t *rec = malloc(hl + body);
    cr_assert(rec);
    memcpy(rec, hdr, hl);
    memcpy(rec + hl, b.data + WIRE_HDR_LEN, body);
    cr_assert_eq(jnl_append_wait(j, INGEST_REC_BATCH, rec, hl + body, 0, &bt->lsn), 0);
    free(rec);
    wire_buf_free(&b);
}

void pm_append_batch(pm_t *m, jnl_t *j, unsigned max_entries)
{
    unsigned count = (unsigned)tmt_rng_range(&m->rng, 1, max_entries);
    /* the first batch starts with every disk's SYNCED, as an agent sends
     * after copying empty disks: from then on points can be cut */
    unsigned lead = m->nops == 0 && !m->no_synced ? m->ndisks : 0;
    count += lead;
    cr_assert(m->nops + count <= PM_MAX_OPS);
    wire_entry_t *e = calloc(count, sizeof *e);
    uint8_t **bufs = calloc(count, sizeof *bufs);
    cr_assert(e && bufs);
    uint64_t first = m->nops + 1;
    for (unsigned i = 0; i < count; i++) {
        pm_op_t *op = &m->ops[m->nops + i];
        memset(op, 0, sizeof *op);
        if (i < lead) {
            op->kind = WIRE_R_SYNCED;
            op->disk = (uint16_t)i;
            e[i].kind = WIRE_R_SYNCED;
            e[i].disk = op->disk;
            continue;
        }
        unsigned r = (unsigned)tmt_rng_range(&m->rng, 0, 99);
        op->disk = (uint16_t)tmt_rng_range(&m->rng, 0, m->ndisks - 1);
        if (r < 75) {
            op->kind = WIRE_R_WRITE;
            pm_range(m, op->disk, 192 * 1024, &op->off, &op->len);
            op->data_id = first + i;
            op->compressible = tmt_rng_range(&m->rng, 0, 1);
            bufs[i] = malloc(op->len);
            tmt_fill(bufs[i], op->len, m->seed, op->data_id, op->compressible);
            e[i].data = bufs[i];
        } else if (r < 85) {
            op->kind = r < 80 ? WIRE_R_ZERO : WIRE_R_TRIM;
            pm_range(m, op->disk, 1536 * 1024, &op->off, &op->len);
        } else if (r < 90) {
            op->kind = WIRE_R_TAG;
            op->tag_kind = WIRE_TAG_APP;
            op->disk = 0;
            snprintf(op->tag, sizeof op->tag, "app-%llu", (unsigned long long)(first + i));
            e[i].data = (const uint8_t *)op->tag;
            e[i].length = (uint32_t)strlen(op->tag);
            e[i].tag_kind = WIRE_TAG_APP;
            e[i].id = first + i;
        } else {
            op->kind = WIRE_R_FLUSH;
            op->disk = 0;
        }
        e[i].kind = op->kind;
        e[i].disk = op->disk;
        if (op->kind != WIRE_R_TAG && op->kind != WIRE_R_FLUSH) {
            e[i].offset = op->off;
            e[i].length = op->len;
        }
    }
    pm__append(m, j, e, count, true);
    for (unsigned i = 0; i < count; i++)
        free(bufs[i]);
    free(bufs);
    free(e);
    m->nops += count;
}

void pm_append_marker(pm_t *m, jnl_t *j, uint8_t kind, uint16_t disk)
{
    cr_assert(m->nops + 1 <= PM_MAX_OPS);
    pm_op_t *op = &m->ops[m->nops];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->disk = disk;
    wire_entry_t e = {.kind = kind, .disk = disk};
    pm__append(m, j, &e, 1, false);
    m->nops++;
}

uint64_t pm_append_tag(pm_t *m, jnl_t *j, uint8_t tag_kind, uint64_t id, const char *name)
{
    cr_assert(m->nops + 1 <= PM_MAX_OPS);
    pm_op_t *op = &m->ops[m->nops];
    memset(op, 0, sizeof *op);
    op->kind = WIRE_R_TAG;
    op->tag_kind = tag_kind;
    snprintf(op->tag, sizeof op->tag, "%s", name);
    wire_entry_t e = {.kind = WIRE_R_TAG, .tag_kind = tag_kind, .id = id, .data = (const uint8_t *)op->tag,
                      .length = (uint32_t)strlen(op->tag)};
    pm__append(m, j, &e, 1, false);
    return ++m->nops;
}

void pm_disk_at(const pm_t *m, unsigned disk, uint64_t seq, uint8_t *out)
{
    memset(out, 0, m->disks[disk].size);
    for (uint64_t s = 1; s <= seq && s <= m->nops; s++) {
        const pm_op_t *op = &m->ops[s - 1];
        if (op->disk != disk)
            continue;
        if (op->kind == WIRE_R_WRITE)
            tmt_fill(out + op->off, op->len, m->seed, op->data_id, op->compressible);
        else if (op->kind == WIRE_R_ZERO || op->kind == WIRE_R_TRIM)
            memset(out + op->off, 0, op->len);
    }
}

uint64_t pm_time_of(const pm_t *m, uint64_t seq)
{
    for (size_t i = 0; i < m->nbatches; i++)
        if (seq >= m->batches[i].first_seq && seq <= m->batches[i].last_seq)
            return m->batches[i].recv_ns;
    return 0;
}

typedef struct pm_find {
    uint64_t seq;
    pts_extent_t found;
    bool ok;
} pm_find_t;

static int pm__find_seq(void *arg, const pts_extent_t *e)
{
    pm_find_t *a = arg;
    if (e->seq != a->seq)
        return 0;
    a->found = *e;
    a->ok = true;
    return 1;
}

void pm_flip_stored_bit(struct pts *p, const char *jdir, const pm_t *m, uint64_t seq)
{
    const pm_op_t *op = &m->ops[seq - 1];
    cr_assert(op->kind == WIRE_R_WRITE && !op->compressible, "seq %llu is not a write of noise",
              (unsigned long long)seq);
    pts_machine_t pm;
    cr_assert_eq(pts_machine(p, m->machine, &pm), 0);
    pm_find_t fa = {.seq = seq};
    cr_assert_eq(pts_index_scan_chunk(pts_index(p), pm.id, op->disk, op->off >> PTS_CHUNK_SHIFT, seq, pm__find_seq,
                                      &fa),
                 0);
    cr_assert(fa.ok, "seq %llu is not in the index", (unsigned long long)seq);
    cr_assert_eq(fa.found.codec, 0, "noise should travel raw");
    char seg[PATH_MAX + 300] = "";
    DIR *d = opendir(jdir);
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "seg-", 4) == 0)
            snprintf(seg, sizeof seg, "%s/%s", jdir, e->d_name);
    closedir(d);
    cr_assert(seg[0], "no segment in %s", jdir);
    int fd = open(seg, O_RDWR);
    cr_assert_geq(fd, 0);
    off_t at = (off_t)(fa.found.pos.off + JNL_REC_HDR_LEN + fa.found.data_off + fa.found.stored / 2);
    uint8_t b;
    cr_assert_eq(pread(fd, &b, 1, at), 1);
    b ^= 0x10;
    cr_assert_eq(pwrite(fd, &b, 1, at), 1);
    close(fd);
}
