/*
 * The ordered stream: a singly linked list of records, oldest first, each
 * one allocation holding its entry and its bytes. Sequence numbers are not
 * stored: the records are consecutive, so the head is acked_seq + 1 and the
 * send cursor is sent_seq + 1.
 */
#include "agent/stream.h"

#include <errno.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"

struct agent_rec {
    agent_rec_t *next;
    wire_entry_t e;  /* e.data points at bytes below (writes, tag names) */
    uint8_t bytes[]; /* e.length bytes for a write, the name for a tag */
};

static uint32_t rec_data_len(const wire_entry_t *e)
{
    return (e->kind == WIRE_R_WRITE || e->kind == WIRE_R_TAG) ? e->length : 0;
}

size_t agent_stream_cost(size_t data_len)
{
    return data_len + AGENT_REC_OVERHEAD;
}

int agent_stream_init(agent_stream_t *s, uint64_t first_seq, size_t max_bytes)
{
    memset(s, 0, sizeof *s);
    if (first_seq == 0)
        return TM_EINVAL;
    s->entries = tm_calloc(WIRE_MAX_BATCH_RECORDS, sizeof *s->entries);
    if (!s->entries)
        return -ENOMEM;
    s->next_seq = first_seq;
    s->acked_seq = first_seq - 1;
    s->sent_seq = first_seq - 1;
    s->max_bytes = max_bytes ? max_bytes : AGENT_STREAM_DEFAULT_BYTES;
    s->renumberable = true;
    return 0;
}

void agent_stream_free(agent_stream_t *s)
{
    agent_rec_t *r = s->head;
    while (r) {
        agent_rec_t *next = r->next;
        tm_free(r);
        r = next;
    }
    tm_free(s->entries);
    memset(s, 0, sizeof *s);
}

bool agent_stream_has_room(const agent_stream_t *s, size_t data_len)
{
    return s->count == 0 || s->held_bytes + agent_stream_cost(data_len) <= s->max_bytes;
}

/* Only what the protocol can carry gets in: a bad record refused later by
 * the server would stop the whole stream, so refuse it here. */
static bool rec_valid(const wire_entry_t *e)
{
    switch (e->kind) {
    case WIRE_R_WRITE:
        if (e->length == 0 || e->length > WIRE_MAX_WRITE || !e->data)
            return false;
        /* fall through */
    case WIRE_R_ZERO:
    case WIRE_R_TRIM:
        return e->length % WIRE_SECTOR == 0 && e->offset % WIRE_SECTOR == 0 && e->length > 0 &&
               e->disk < WIRE_MAX_DISKS;
    case WIRE_R_TAG: {
        if (e->tag_kind < WIRE_TAG_CRASH || e->tag_kind > WIRE_TAG_GROUP || !e->data || e->length == 0 ||
            e->length > WIRE_MAX_NAME)
            return false;
        char name[WIRE_MAX_NAME + 1];
        memcpy(name, e->data, e->length);
        name[e->length] = '\0';
        return strlen(name) == e->length && wire_name_ok(name);
    }
    case WIRE_R_FLUSH:
        return true;
    case WIRE_R_SYNCED:
    case WIRE_R_RESYNC:
        return e->disk < WIRE_MAX_DISKS;
    }
    return false;
}

int agent_stream_append(agent_stream_t *s, const wire_entry_t *rec, bool force, uint64_t *seq)
{
    if (!rec_valid(rec))
        return TM_EINVAL;
    uint32_t n = rec_data_len(rec);
    if (!force && !agent_stream_has_room(s, n))
        return -EAGAIN;
    agent_rec_t *r = tm_malloc(sizeof *r + n);
    if (!r)
        return -ENOMEM;
    r->next = NULL;
    r->e = *rec;
    if (rec->kind != WIRE_R_TAG)
        r->e.tag_kind = 0;
    if (rec->kind != WIRE_R_TAG)
        r->e.id = 0;
    if (rec->kind == WIRE_R_TAG || rec->kind == WIRE_R_FLUSH)
        r->e.disk = 0, r->e.offset = 0;
    if (rec->kind == WIRE_R_FLUSH || rec->kind == WIRE_R_SYNCED || rec->kind == WIRE_R_RESYNC)
        r->e.length = 0;
    if (rec->kind == WIRE_R_SYNCED || rec->kind == WIRE_R_RESYNC)
        r->e.offset = 0;
    r->e.hash = 0;
    if (n)
        memcpy(r->bytes, rec->data, n);
    r->e.data = n ? r->bytes : NULL;

    if (s->tail)
        s->tail->next = r;
    else
        s->head = r;
    s->tail = r;
    if (!s->cursor)
        s->cursor = r;
    if (seq)
        *seq = s->next_seq;
    s->next_seq++;
    s->count++;
    s->appended++;
    s->held_bytes += agent_stream_cost(n);
    return 0;
}

int agent_stream_write(agent_stream_t *s, uint16_t disk, uint64_t offset, const void *data, uint32_t len,
                       uint64_t *seq)
{
    wire_entry_t e = {.kind = WIRE_R_WRITE, .disk = disk, .offset = offset, .length = len, .data = data};
    return agent_stream_append(s, &e, false, seq);
}

int agent_stream_zero(agent_stream_t *s, uint16_t disk, uint64_t offset, uint32_t len, uint64_t *seq)
{
    wire_entry_t e = {.kind = WIRE_R_ZERO, .disk = disk, .offset = offset, .length = len};
    return agent_stream_append(s, &e, false, seq);
}

int agent_stream_trim(agent_stream_t *s, uint16_t disk, uint64_t offset, uint32_t len, uint64_t *seq)
{
    wire_entry_t e = {.kind = WIRE_R_TRIM, .disk = disk, .offset = offset, .length = len};
    return agent_stream_append(s, &e, false, seq);
}

int agent_stream_tag(agent_stream_t *s, uint8_t tag_kind, uint64_t id, const char *name, bool force,
                     uint64_t *seq)
{
    size_t n = name ? strlen(name) : 0;
    if (n > WIRE_MAX_NAME)
        return TM_EINVAL;
    wire_entry_t e = {.kind = WIRE_R_TAG, .tag_kind = tag_kind, .id = id, .length = (uint32_t)n, .data = (const uint8_t *)name};
    return agent_stream_append(s, &e, force, seq);
}

int agent_stream_flush(agent_stream_t *s, bool force, uint64_t *seq)
{
    wire_entry_t e = {.kind = WIRE_R_FLUSH};
    return agent_stream_append(s, &e, force, seq);
}

int agent_stream_synced(agent_stream_t *s, uint16_t disk, bool force, uint64_t *seq)
{
    wire_entry_t e = {.kind = WIRE_R_SYNCED, .disk = disk};
    return agent_stream_append(s, &e, force, seq);
}

int agent_stream_resync(agent_stream_t *s, uint16_t disk, bool force, uint64_t *seq)
{
    wire_entry_t e = {.kind = WIRE_R_RESYNC, .disk = disk};
    return agent_stream_append(s, &e, force, seq);
}

/* Drop records from the head up to and including seq `upto`. */
static int64_t drop_upto(agent_stream_t *s, uint64_t upto)
{
    int64_t dropped = 0;
    while (s->head && s->acked_seq < upto) {
        agent_rec_t *r = s->head;
        uint32_t n = rec_data_len(&r->e);
        s->head = r->next;
        if (!s->head)
            s->tail = NULL;
        if (s->cursor == r)
            s->cursor = r->next;
        s->held_bytes -= agent_stream_cost(n);
        s->count--;
        s->acked_seq++;
        if (s->acked_seq <= s->sent_seq)
            s->inflight_data -= n;
        tm_free(r);
        dropped++;
    }
    return dropped;
}

int agent_stream_resume(agent_stream_t *s, uint64_t next_seq)
{
    if (next_seq == 0)
        return TM_EINVAL;
    if (s->renumberable) {
        /* Nothing has left this process: the held records simply take the
         * numbers the server expects next. */
        s->acked_seq = next_seq - 1;
        s->sent_seq = next_seq - 1;
        s->next_seq = next_seq + s->count;
        s->cursor = s->head;
        s->inflight_data = 0;
        return 0;
    }
    if (next_seq > s->next_seq)
        return TM_EINVAL;
    if (next_seq <= s->acked_seq)
        return TM_ENOTFOUND;
    drop_upto(s, next_seq - 1);
    s->sent_seq = s->acked_seq;
    s->cursor = s->head;
    s->inflight_data = 0;
    return 0;
}

int64_t agent_stream_ack(agent_stream_t *s, uint64_t durable_seq)
{
    if (durable_seq > s->sent_seq)
        return TM_EINVAL;
    if (durable_seq <= s->acked_seq)
        return 0;
    return drop_upto(s, durable_seq);
}

int agent_stream_next_batch(agent_stream_t *s, wire_buf_t *b, uint32_t max_data, uint32_t window, bool compress)
{
    if (max_data > WIRE_MAX_BATCH_DATA)
        max_data = WIRE_MAX_BATCH_DATA;
    uint64_t first = s->sent_seq + 1;
    uint64_t data = 0;
    unsigned n = 0;
    agent_rec_t *r = s->cursor;
    while (r && n < WIRE_MAX_BATCH_RECORDS) {
        uint32_t d = rec_data_len(&r->e);
        bool alone = n == 0 && s->inflight_data == 0;
        if (!alone) {
            if (data + d > max_data)
                break;
            if (s->inflight_data + data + d > window)
                break;
        }
        s->entries[n++] = r->e;
        data += d;
        r = r->next;
    }
    if (n == 0)
        return 0;
    if (wire_enc_records(b, first, s->entries, (uint16_t)n, compress) != 0)
        return -ENOMEM;
    if (b->oom)
        return -ENOMEM;
    s->cursor = r;
    s->sent_seq += n;
    s->inflight_data += data;
    s->renumberable = false;
    return (int)n;
}
