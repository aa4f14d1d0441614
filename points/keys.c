/*
 * Key and value encodings of the index (layout in keys.h). Parsers check
 * every length: the index is our own file, but a damaged one must be named,
 * not read past.
 */
#include "points/keys.h"

#include <string.h>

#include "base/endian.h"
#include "base/err.h"

void pts_key_prefix(uint8_t k[5], char tag, uint32_t mid)
{
    k[0] = (uint8_t)tag;
    tm_put_be32(k + 1, mid);
}

void pts_key_extent(uint8_t k[PTS_EXTENT_KEY_LEN], uint32_t mid, uint16_t disk, uint64_t chunk, uint64_t seq)
{
    pts_key_prefix(k, PTS_K_EXTENT, mid);
    tm_put_be16(k + 5, disk);
    tm_put_be64(k + 7, chunk);
    tm_put_be64(k + 15, seq);
}

int pts_key_extent_parse(const uint8_t *k, size_t len, uint32_t *mid, uint16_t *disk, uint64_t *chunk, uint64_t *seq)
{
    if (len != PTS_EXTENT_KEY_LEN || k[0] != PTS_K_EXTENT)
        return TM_ECORRUPT;
    *mid = tm_get_be32(k + 1);
    *disk = tm_get_be16(k + 5);
    *chunk = tm_get_be64(k + 7);
    *seq = tm_get_be64(k + 15);
    return 0;
}

void pts_val_extent(uint8_t v[PTS_EXTENT_VAL_LEN], const pts_extent_t *e)
{
    memset(v, 0, PTS_EXTENT_VAL_LEN);
    v[0] = e->kind;
    v[1] = e->codec;
    tm_put32(v + 4, e->len);
    tm_put64(v + 8, e->off);
    tm_put64(v + 16, e->w_off);
    tm_put32(v + 24, e->w_len);
    tm_put32(v + 28, e->data_off);
    tm_put32(v + 32, e->stored);
    tm_put64(v + 40, e->lsn);
    tm_put64(v + 48, e->pos.seg);
    tm_put64(v + 56, e->pos.off);
    tm_put64(v + 64, e->hash);
}

int pts_val_extent_parse(const uint8_t *v, size_t len, uint64_t seq, pts_extent_t *e)
{
    if (len != PTS_EXTENT_VAL_LEN)
        return TM_ECORRUPT;
    e->seq = seq;
    e->kind = v[0];
    e->codec = v[1];
    e->len = tm_get32(v + 4);
    e->off = tm_get64(v + 8);
    e->w_off = tm_get64(v + 16);
    e->w_len = tm_get32(v + 24);
    e->data_off = tm_get32(v + 28);
    e->stored = tm_get32(v + 32);
    e->lsn = tm_get64(v + 40);
    e->pos.seg = tm_get64(v + 48);
    e->pos.off = tm_get64(v + 56);
    e->hash = tm_get64(v + 64);
    if (e->kind < PTS_EXT_WRITE || e->kind > PTS_EXT_TRIM || e->len == 0 || e->off < e->w_off ||
        e->off - e->w_off + e->len > e->w_len || e->codec > 1)
        return TM_ECORRUPT;
    if (e->kind == PTS_EXT_WRITE && (e->stored == 0 || (e->codec == 0 && e->stored != e->w_len)))
        return TM_ECORRUPT;
    return 0;
}

void pts_key_point(uint8_t k[PTS_POINT_KEY_LEN], uint32_t mid, uint64_t seq)
{
    pts_key_prefix(k, PTS_K_POINT, mid);
    tm_put_be64(k + 5, seq);
}

void pts_key_unsafe(uint8_t k[PTS_POINT_KEY_LEN], uint32_t mid, uint64_t begin)
{
    pts_key_prefix(k, PTS_K_UNSAFE, mid);
    tm_put_be64(k + 5, begin);
}

int pts_key_point_parse(const uint8_t *k, size_t len, uint32_t *mid, uint64_t *seq)
{
    if (len != PTS_POINT_KEY_LEN || k[0] != PTS_K_POINT)
        return TM_ECORRUPT;
    *mid = tm_get_be32(k + 1);
    *seq = tm_get_be64(k + 5);
    return 0;
}

size_t pts_val_point(uint8_t v[PTS_POINT_VAL_MAX], const pts_point_t *pt)
{
    size_t n = strlen(pt->tag);
    memset(v, 0, 24);
    v[0] = (uint8_t)pt->kind;
    v[1] = (uint8_t)n;
    tm_put16(v + 2, pt->multivm ? PTS_POINT_F_MULTIVM : 0);
    tm_put64(v + 8, pt->time_ns);
    tm_put64(v + 16, pt->tag_id);
    memcpy(v + 24, pt->tag, n);
    return 24 + n;
}

int pts_val_point_parse(const uint8_t *v, size_t len, uint64_t seq, pts_point_t *pt)
{
    if (len < 24 || len != 24u + v[1] || v[1] > WIRE_MAX_NAME || (v[0] != PTS_KIND_CRASH && v[0] != PTS_KIND_APP) ||
        (tm_get16(v + 2) & ~PTS_POINT_F_MULTIVM) != 0)
        return TM_ECORRUPT;
    pt->seq = seq;
    pt->multivm = (tm_get16(v + 2) & PTS_POINT_F_MULTIVM) != 0;
    pt->kind = (pts_kind_t)v[0];
    pt->time_ns = tm_get64(v + 8);
    pt->tag_id = tm_get64(v + 16);
    memcpy(pt->tag, v + 24, v[1]);
    pt->tag[v[1]] = '\0';
    return 0;
}

void pts_key_time(uint8_t k[PTS_TIME_KEY_LEN], uint32_t mid, uint64_t ns, uint64_t seq)
{
    pts_key_prefix(k, PTS_K_TIME, mid);
    tm_put_be64(k + 5, ns);
    tm_put_be64(k + 13, seq);
}

int pts_key_time_parse(const uint8_t *k, size_t len, uint32_t *mid, uint64_t *ns, uint64_t *seq)
{
    if (len != PTS_TIME_KEY_LEN || k[0] != PTS_K_TIME)
        return TM_ECORRUPT;
    *mid = tm_get_be32(k + 1);
    *ns = tm_get_be64(k + 5);
    *seq = tm_get_be64(k + 13);
    return 0;
}

void pts_key_machine(uint8_t k[PTS_MACHINE_KEY_LEN], uint32_t mid)
{
    pts_key_prefix(k, PTS_K_MACHINE, mid);
}

static size_t pts__put_name(uint8_t *v, const char *s)
{
    size_t n = strlen(s);
    v[0] = (uint8_t)n;
    memcpy(v + 1, s, n);
    return 1 + n;
}

size_t pts_val_machine(uint8_t v[PTS_MACHINE_VAL_MAX], const pts_mrec_t *r)
{
    size_t o = 0;
    tm_put16(v, 1);
    o += 2;
    o += pts__put_name(v + o, r->m.name);
    tm_put16(v + o, (uint16_t)r->m.ndisks);
    o += 2;
    for (unsigned i = 0; i < r->m.ndisks; i++) {
        o += pts__put_name(v + o, r->m.disks[i].name);
        tm_put64(v + o, r->m.disks[i].size);
        o += 8;
    }
    tm_put64(v + o, r->synced_mask);
    tm_put64(v + o + 8, r->m.seq);
    tm_put64(v + o + 16, r->m.seq_ns);
    tm_put64(v + o + 24, r->m.first_seq);
    tm_put64(v + o + 32, r->latest_seq);
    tm_put64(v + o + 40, r->m.base_seq);
    tm_put64(v + o + 48, r->resync_mask);
    tm_put64(v + o + 56, r->unsafe_since);
    return o + 64;
}

/* A u8-length name at *o of v[0..len); 0 or TM_ECORRUPT. */
static int pts__get_name(const uint8_t *v, size_t len, size_t *o, char out[WIRE_MAX_NAME + 1])
{
    if (*o >= len || v[*o] == 0 || v[*o] > WIRE_MAX_NAME || *o + 1 + v[*o] > len)
        return TM_ECORRUPT;
    size_t n = v[*o];
    memcpy(out, v + *o + 1, n);
    out[n] = '\0';
    *o += 1 + n;
    return 0;
}

int pts_val_machine_parse(const uint8_t *v, size_t len, pts_mrec_t *r)
{
    memset(r, 0, sizeof *r);
    size_t o = 2;
    if (len < 2 || tm_get16(v) != 1)
        return TM_ECORRUPT;
    if (pts__get_name(v, len, &o, r->m.name) != 0 || o + 2 > len)
        return TM_ECORRUPT;
    r->m.ndisks = tm_get16(v + o);
    o += 2;
    if (r->m.ndisks > WIRE_MAX_DISKS)
        return TM_ECORRUPT;
    for (unsigned i = 0; i < r->m.ndisks; i++) {
        if (pts__get_name(v, len, &o, r->m.disks[i].name) != 0 || o + 8 > len)
            return TM_ECORRUPT;
        r->m.disks[i].size = tm_get64(v + o);
        o += 8;
    }
    if (o + 64 != len)
        return TM_ECORRUPT;
    r->synced_mask = tm_get64(v + o);
    r->m.seq = tm_get64(v + o + 8);
    r->m.seq_ns = tm_get64(v + o + 16);
    r->m.first_seq = tm_get64(v + o + 24);
    r->latest_seq = tm_get64(v + o + 32);
    r->m.base_seq = tm_get64(v + o + 40);
    r->resync_mask = tm_get64(v + o + 48);
    r->unsafe_since = tm_get64(v + o + 56);
    for (unsigned i = 0; i < r->m.ndisks; i++) {
        r->m.disks[i].synced = (r->synced_mask >> i) & 1u;
        r->m.disks[i].resync = (r->resync_mask >> i) & 1u;
    }
    return 0;
}

void pts_val_time(uint8_t v[PTS_TIME_VAL_LEN], const pts_tbatch_t *b)
{
    tm_put64(v, b->first_seq);
    tm_put64(v + 8, b->lsn);
    tm_put64(v + 16, b->pos.seg);
    tm_put64(v + 24, b->pos.off);
}

int pts_time_parse(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, uint32_t *mid, pts_tbatch_t *b)
{
    if (pts_key_time_parse(k, kl, mid, &b->recv_ns, &b->last_seq) != 0 || vl != PTS_TIME_VAL_LEN)
        return TM_ECORRUPT;
    b->first_seq = tm_get64(v);
    b->lsn = tm_get64(v + 8);
    b->pos.seg = tm_get64(v + 16);
    b->pos.off = tm_get64(v + 24);
    return b->first_seq && b->first_seq <= b->last_seq ? 0 : TM_ECORRUPT;
}
