/* Journal payloads written by ingest; the layouts are in record.h. */
#include "ingest/record.h"

#include <string.h>

#include "base/endian.h"
#include "base/err.h"

size_t ingest_rec_batch_header(uint8_t *out, uint64_t recv_ns, const char *machine)
{
    size_t mlen = strlen(machine);
    tm_put16(out, INGEST_REC_VERSION);
    tm_put16(out + 2, 0);
    tm_put64(out + 4, recv_ns);
    out[12] = (uint8_t)mlen;
    memcpy(out + 13, machine, mlen);
    return 13 + mlen;
}

/* A name field: u8 length and the bytes; 0 or TM_ECORRUPT. */
static int ingest__get_name(const uint8_t *p, size_t len, size_t *off, char out[WIRE_MAX_NAME + 1])
{
    if (*off + 1 > len)
        return TM_ECORRUPT;
    size_t n = p[*off];
    if (n == 0 || n > WIRE_MAX_NAME || *off + 1 + n > len)
        return TM_ECORRUPT;
    memcpy(out, p + *off + 1, n);
    out[n] = '\0';
    *off += 1 + n;
    if (memchr(out, '\0', n) || !wire_name_ok(out))
        return TM_ECORRUPT;
    return 0;
}

int ingest_rec_batch_parse(const uint8_t *p, size_t len, ingest_batch_rec_t *out)
{
    memset(out, 0, sizeof *out);
    if (len < 2)
        return TM_ECORRUPT;
    out->version = tm_get16(p);
    if (out->version != INGEST_REC_VERSION)
        return TM_EVERSION;
    if (len < 13)
        return TM_ECORRUPT;
    out->flags = tm_get16(p + 2);
    if (out->flags != 0)
        return TM_EVERSION;
    out->recv_ns = tm_get64(p + 4);
    size_t off = 12;
    int rc = ingest__get_name(p, len, &off, out->machine);
    if (rc)
        return rc;
    if (len - off < WIRE_RECORDS_HDR_LEN)
        return TM_ECORRUPT;
    out->body = p + off;
    out->body_len = len - off;
    out->first_seq = tm_get64(out->body);
    out->count = tm_get16(out->body + 8);
    if (out->first_seq == 0 || out->count == 0)
        return TM_ECORRUPT;
    return 0;
}

int ingest_rec_batch_synced(const ingest_batch_rec_t *b, uint64_t *mask)
{
    *mask = 0;
    if ((uint64_t)b->count * WIRE_ENTRY_LEN > b->body_len - WIRE_RECORDS_HDR_LEN)
        return TM_ECORRUPT;
    for (unsigned i = 0; i < b->count; i++) {
        /* entry: u8 kind at 0, u16 disk at 4 (wire/msg.h) */
        const uint8_t *e = b->body + WIRE_RECORDS_HDR_LEN + (size_t)i * WIRE_ENTRY_LEN;
        if (e[0] != WIRE_R_SYNCED)
            continue;
        uint16_t disk = tm_get16(e + 4);
        if (disk >= WIRE_MAX_DISKS)
            return TM_ECORRUPT;
        *mask |= UINT64_C(1) << disk;
    }
    return 0;
}

int ingest_rec_batch_resync(const ingest_batch_rec_t *b, uint64_t *open, uint64_t *close)
{
    *open = *close = 0;
    if ((uint64_t)b->count * WIRE_ENTRY_LEN > b->body_len - WIRE_RECORDS_HDR_LEN)
        return TM_ECORRUPT;
    for (unsigned i = 0; i < b->count; i++) {
        const uint8_t *e = b->body + WIRE_RECORDS_HDR_LEN + (size_t)i * WIRE_ENTRY_LEN;
        if (e[0] != WIRE_R_SYNCED && e[0] != WIRE_R_RESYNC)
            continue;
        uint16_t disk = tm_get16(e + 4);
        if (disk >= WIRE_MAX_DISKS)
            return TM_ECORRUPT;
        uint64_t bit = UINT64_C(1) << disk;
        /* in stream order: the later record of a disk decides */
        if (e[0] == WIRE_R_RESYNC) {
            *open |= bit;
            *close &= ~bit;
        } else {
            *close |= bit;
            *open &= ~bit;
        }
    }
    return 0;
}

size_t ingest_rec_disks_encode(uint8_t *out, const char *machine, const wire_disk_t *disks, uint16_t ndisks)
{
    size_t o = 0;
    tm_put16(out, INGEST_REC_VERSION);
    o += 2;
    size_t n = strlen(machine);
    out[o++] = (uint8_t)n;
    memcpy(out + o, machine, n);
    o += n;
    tm_put16(out + o, ndisks);
    o += 2;
    for (unsigned i = 0; i < ndisks; i++) {
        n = strlen(disks[i].name);
        out[o++] = (uint8_t)n;
        memcpy(out + o, disks[i].name, n);
        o += n;
        tm_put64(out + o, disks[i].size);
        o += 8;
    }
    return o;
}

int ingest_rec_disks_parse(const uint8_t *p, size_t len, char machine[WIRE_MAX_NAME + 1], wire_disk_t *disks,
                           uint16_t *ndisks)
{
    if (len < 2)
        return TM_ECORRUPT;
    if (tm_get16(p) != INGEST_REC_VERSION)
        return TM_EVERSION;
    size_t off = 2;
    int rc = ingest__get_name(p, len, &off, machine);
    if (rc)
        return rc;
    if (off + 2 > len)
        return TM_ECORRUPT;
    uint16_t n = tm_get16(p + off);
    off += 2;
    if (n == 0 || n > WIRE_MAX_DISKS)
        return TM_ECORRUPT;
    for (unsigned i = 0; i < n; i++) {
        rc = ingest__get_name(p, len, &off, disks[i].name);
        if (rc)
            return rc;
        if (off + 8 > len)
            return TM_ECORRUPT;
        disks[i].size = tm_get64(p + off);
        off += 8;
    }
    if (off != len)
        return TM_ECORRUPT;
    *ndisks = n;
    return 0;
}
