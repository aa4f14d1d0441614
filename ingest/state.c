/*
 * Per-machine state: the table, and its rebuild from the journal at start.
 *
 * The points stage keeps each machine's state in its index, together with
 * the journal position it reflects; `tidemark serve` hands it over
 * (ingest_options_t.known) and ingest reads only the journal records from
 * that position on, so the journal may retire what the index no longer
 * needs. Without it (tools, tests) every record still held is read.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "ingest/ingest_int.h"
#include "ingest/record.h"

ig_machine_t *ig_machine_find(ingest_t *ig, const char *name)
{
    for (size_t i = 0; i < ig->nmachines; i++)
        if (strcmp(ig->machines[i]->name, name) == 0)
            return ig->machines[i];
    return NULL;
}

ig_machine_t *ig_machine_get(ingest_t *ig, const char *name)
{
    ig_machine_t *m = ig_machine_find(ig, name);
    if (m)
        return m;
    if (tm_grow((void **)&ig->machines, &ig->cap_machines, ig->nmachines + 1, sizeof ig->machines[0]) != 0)
        return NULL;
    m = tm_calloc(1, sizeof *m);
    if (!m)
        return NULL;
    snprintf(m->name, sizeof m->name, "%s", name);
    ig->machines[ig->nmachines++] = m;
    return m;
}

int ig_machine_set_disks(ig_machine_t *m, const wire_disk_t *disks, uint16_t n)
{
    wire_disk_t *d = NULL;
    if (n) {
        d = tm_malloc(n * sizeof *d);
        if (!d)
            return -ENOMEM;
        memcpy(d, disks, n * sizeof *d);
    }
    tm_free(m->disks);
    m->disks = d;
    m->ndisks = n;
    return 0;
}

uint64_t ig_machine_all_disks(const ig_machine_t *m)
{
    if (m->ndisks == 0)
        return 0;
    return m->ndisks >= 64 ? UINT64_MAX : (UINT64_C(1) << m->ndisks) - 1;
}

static unsigned ig__popcount(uint64_t x)
{
    unsigned n = 0;
    for (; x; x &= x - 1)
        n++;
    return n;
}

void ig_machine_synced(ig_machine_t *m, uint64_t mask)
{
    uint64_t all = ig_machine_all_disks(m);
    uint64_t fresh = mask & all & ~m->synced;
    if (!fresh)
        return;
    for (unsigned d = 0; d < m->ndisks; d++) {
        if (!(fresh & (UINT64_C(1) << d)))
            continue;
        m->synced |= UINT64_C(1) << d;
        tm_info("ingest: machine %s: initial copy of disk %s complete (%u of %u disk%s)", m->name, m->disks[d].name,
                ig__popcount(m->synced & all), m->ndisks, m->ndisks == 1 ? "" : "s");
    }
    /* fresh was not empty, so the machine was not protected before */
    if ((m->synced & all) == all)
        tm_info("ingest: machine %s is protected: initial copy of %u disk(s) complete", m->name, m->ndisks);
}

void ig_machine_resync(ig_machine_t *m, uint64_t open, uint64_t close)
{
    uint64_t all = ig_machine_all_disks(m);
    uint64_t was = m->resync & all;
    uint64_t now = ((m->resync | open) & ~close) & all;
    m->resync = now;
    for (unsigned d = 0; d < m->ndisks; d++) {
        uint64_t bit = UINT64_C(1) << d;
        if ((now & bit) && !(was & bit))
            tm_info("ingest: machine %s: resync of disk %s began: its copy is not crash-consistent until it ends",
                    m->name, m->disks[d].name);
        else if (!(now & bit) && (was & bit))
            tm_info("ingest: machine %s: resync of disk %s complete", m->name, m->disks[d].name);
    }
    if (was && !now && (m->synced & all) == all)
        tm_info("ingest: machine %s is protected again: resync complete", m->name);
}

static void ig__info(const ig_machine_t *m, ingest_machine_info_t *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", m->name);
    uint64_t all = ig_machine_all_disks(m);
    out->ndisks = m->ndisks;
    out->synced = ig__popcount(m->synced & all);
    out->resyncing = ig__popcount(m->resync & all);
    out->state = m->ndisks == 0                ? INGEST_MACHINE_NEW
                 : (m->synced & all) != all ? INGEST_MACHINE_INITIAL_COPY
                 : (m->resync & all)        ? INGEST_MACHINE_RESYNC
                                              : INGEST_MACHINE_PROTECTED;
    out->durable_seq = m->durable_seq;
    out->connected = m->conn != NULL;
    out->stopped = m->stop == IG_STOP_STOPPED;
    out->retired = m->retired;
}

const char *ingest_machine_state_name(ingest_machine_state_t s)
{
    switch (s) {
    case INGEST_MACHINE_NEW: return "new";
    case INGEST_MACHINE_INITIAL_COPY: return "initial-copy";
    case INGEST_MACHINE_PROTECTED: return "protected";
    case INGEST_MACHINE_RESYNC: return "resync";
    }
    return "unknown";
}

size_t ingest_machine_count(const ingest_t *ig)
{
    return ig->nmachines;
}

int ingest_machine_at(const ingest_t *ig, size_t i, ingest_machine_info_t *out)
{
    if (i >= ig->nmachines)
        return TM_ENOTFOUND;
    ig__info(ig->machines[i], out);
    return 0;
}

int ingest_machine_state(const ingest_t *ig, const char *name, ingest_machine_info_t *out)
{
    for (size_t i = 0; i < ig->nmachines; i++) {
        if (strcmp(ig->machines[i]->name, name) == 0) {
            ig__info(ig->machines[i], out);
            return 0;
        }
    }
    return TM_ENOTFOUND;
}

void ig_machines_free(ingest_t *ig)
{
    for (size_t i = 0; i < ig->nmachines; i++) {
        tm_free(ig->machines[i]->disks);
        tm_free(ig->machines[i]);
    }
    tm_free(ig->machines);
    ig->machines = NULL;
    ig->nmachines = ig->cap_machines = 0;
}

/* One journal record; 0, or an error with err filled. */
static int ig__rebuild_one(ingest_t *ig, const jnl_record_t *rec, wire_disk_t *disks, char *err, size_t errlen)
{
    char name[WIRE_MAX_NAME + 1];
    uint16_t n = 0;
    int rc;

    if (rec->type == INGEST_REC_BATCH) {
        ingest_batch_rec_t b;
        rc = ingest_rec_batch_parse(rec->data, rec->len, &b);
        if (rc)
            goto out_bad;
        ig_machine_t *m = ig_machine_get(ig, b.machine);
        if (!m)
            return -ENOMEM;
        uint64_t last = b.first_seq + b.count - 1;
        /* The server journals a machine's batches in order and without gaps;
         * anything else here means the log was not written by these rules. */
        /* (the index's state may already hold a few records past known_lsn) */
        if (b.first_seq > m->durable_seq + 1)
            tm_warn("ingest: journal LSN %" PRIu64 ": machine %s batch starts at sequence %" PRIu64
                    " after %" PRIu64,
                    rec->lsn, b.machine, b.first_seq, m->durable_seq);
        if (last > m->durable_seq)
            m->durable_seq = last;
        /* The machine's synced flags are these records: a disk whose SYNCED
         * record is in the journal needs no copy again. */
        uint64_t mask;
        rc = ingest_rec_batch_synced(&b, &mask);
        if (rc)
            goto out_bad;
        m->synced |= mask;
        uint64_t open, close;
        rc = ingest_rec_batch_resync(&b, &open, &close);
        if (rc)
            goto out_bad;
        m->resync = (m->resync | open) & ~close;
        return 0;
    }
    if (rec->type == INGEST_REC_DISKS) {
        rc = ingest_rec_disks_parse(rec->data, rec->len, name, disks, &n);
        if (rc)
            goto out_bad;
        ig_machine_t *m = ig_machine_get(ig, name);
        if (!m || ig_machine_set_disks(m, disks, n) != 0)
            return -ENOMEM;
        return 0;
    }
    /* Other stages' record types are not ingest's business. */
    return 0;

out_bad:
    snprintf(err, errlen, "journal record LSN %" PRIu64 " (type %u) %s", rec->lsn, rec->type,
             rc == TM_EVERSION ? "has an ingest payload version this build cannot read"
                               : "is not a valid ingest payload");
    return rc;
}

/* Machines as the index knows them. */
static int ig__seed(ingest_t *ig, const ingest_options_t *opts)
{
    for (size_t i = 0; i < opts->nknown; i++) {
        const ingest_known_t *k = &opts->known[i];
        ig_machine_t *m = ig_machine_get(ig, k->name);
        if (!m || ig_machine_set_disks(m, k->disks, k->ndisks) != 0)
            return -ENOMEM;
        m->durable_seq = k->seq;
        m->synced = k->synced;
        m->resync = k->resync;
    }
    return 0;
}

int ig_rebuild(ingest_t *ig, const ingest_options_t *opts, char *err, size_t errlen)
{
    jnl_reader_t *r = NULL;
    jnl_record_t rec;
    uint64_t records = 0;
    uint64_t from = opts->known_lsn;
    int rc = from ? ig__seed(ig, opts) : 0;
    if (rc) {
        snprintf(err, errlen, "%s", tm_strerror(rc));
        return rc;
    }
    rc = jnl_reader_open(ig->jnl, from, &r);
    if (rc) {
        snprintf(err, errlen, "cannot read the journal%s: %s", rc == TM_ERETIRED ? " from where the index ends" : "",
                 tm_strerror(rc));
        return rc;
    }
    wire_disk_t *disks = tm_malloc(WIRE_MAX_DISKS * sizeof *disks);
    if (!disks) {
        rc = -ENOMEM;
        snprintf(err, errlen, "%s", tm_strerror(rc));
        goto out_close;
    }
    for (;;) {
        rc = jnl_reader_next(r, &rec);
        if (rc == -EAGAIN) {
            rc = 0;
            break;
        }
        if (rc) {
            snprintf(err, errlen, "reading the journal: %s", tm_strerror(rc));
            break;
        }
        records++;
        rc = ig__rebuild_one(ig, &rec, disks, err, errlen);
        if (rc == -ENOMEM)
            snprintf(err, errlen, "%s", tm_strerror(rc));
        if (rc)
            break;
    }
    if (rc == 0)
        tm_info("ingest: %zu machine%s known from %s%" PRIu64 " journal record%s", ig->nmachines,
                ig->nmachines == 1 ? "" : "s", from ? "the index and " : "", records, records == 1 ? "" : "s");
    for (size_t i = 0; i < ig->nmachines; i++) {
        ig_machine_t *m = ig->machines[i];
        m->next_seq = m->durable_seq + 1;
        /* SYNCED names disk indexes; only the machine's own disks count. */
        m->synced &= ig_machine_all_disks(m);
        m->resync &= ig_machine_all_disks(m);
    }
    tm_free(disks);
out_close:
    jnl_reader_close(r);
    return rc;
}
