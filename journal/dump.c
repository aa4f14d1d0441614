/*
 * `tidemark journal dump`: print what is on disk, with the same decoder and
 * rules as recovery, and stop at the first bad segment or record with its
 * position and reason. Reads only; every record of every segment is checked.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "journal/journal_int.h"

typedef struct jnl_dumper {
    const char *dir;
    FILE *out;
    bool verbose;
    jnl_io_t io;
} jnl_dumper_t;

static void jnl__dump_hdr(jnl_dumper_t *d, const jnl_seg_file_t *f)
{
    char when[40];
    tm_format_time(f->hdr.created_ns, when, sizeof when);
    fprintf(d->out,
            "segment %llu (" JNL_SEG_NAME_FMT "): version %u, size %llu, journal %016llx, salt %016llx, "
            "first LSN %llu, prev_end %llu, created %s\n",
            (unsigned long long)f->seq, (unsigned long long)f->seq, f->hdr.version,
            (unsigned long long)f->hdr.segment_size, (unsigned long long)f->hdr.journal_id,
            (unsigned long long)f->hdr.salt, (unsigned long long)f->hdr.first_lsn,
            (unsigned long long)f->hdr.prev_end, when);
}

/* Scan one segment's records up to limit. Sealed segments must end exactly
 * at limit; the last one ends at its first invalid record. */
static int jnl__dump_records(jnl_dumper_t *d, const jnl_seg_file_t *f, bool sealed, uint64_t limit,
                             uint64_t next_first, uint64_t *last_lsn)
{
    char *path = jnl__path(d->dir, JNL_SEG_NAME_FMT, f->seq);
    if (!path)
        return -ENOMEM;
    int fd = d->io.open(path, O_RDONLY, 0);
    tm_free(path);
    if (fd < 0)
        return -errno;
    jnl_seg_t s = {.seq = f->seq, .first_lsn = f->hdr.first_lsn, .salt = f->hdr.salt, .size = f->hdr.segment_size};
    jnl_win_t w;
    jnl__win_init(&w, &d->io, fd, limit < f->file_size ? limit : f->file_size);
    uint64_t off = JNL_SEG_DATA_OFF, expect = f->hdr.first_lsn;
    jnl_rec_verdict_t v = JNL_REC_OK;
    int rc = 0;
    while (off < w.limit) {
        jnl_rec_hdr_t h;
        const uint8_t *rec;
        int err;
        v = jnl__check_at(&w, &s, off, expect, &h, &rec, &err);
        if (err) {
            rc = err;
            goto out;
        }
        if (v != JNL_REC_OK)
            break;
        if (d->verbose) {
            char when[40];
            tm_format_time(h.time_ns, when, sizeof when);
            fprintf(d->out, "  LSN %llu at %llu: type %u, %u bytes%s, stored %u, batch from LSN %llu, %s\n",
                    (unsigned long long)h.lsn, (unsigned long long)off, h.type, h.raw_len,
                    (h.flags & JNL_FLAG_LZ4) ? " lz4" : "", h.length - JNL_REC_OVERHEAD,
                    (unsigned long long)(h.lsn - h.batch_back), when);
        }
        off += h.length;
        expect++;
    }
    *last_lsn = expect - 1;
    if (sealed) {
        if (off == limit && expect == next_first) {
            fprintf(d->out, "  sealed at offset %llu; LSNs %llu..%llu\n", (unsigned long long)off,
                    (unsigned long long)f->hdr.first_lsn, (unsigned long long)(expect - 1));
        } else {
            fprintf(d->out, "  CORRUPT at offset %llu: %s (the next segment says records end at %llu)\n",
                    (unsigned long long)off, v == JNL_REC_OK ? "records do not end there" : jnl_rec_verdict_str(v),
                    (unsigned long long)limit);
            rc = TM_ECORRUPT;
        }
        goto out;
    }
    jnl__end_info_t e;
    if ((rc = jnl__classify_end(&w, &s, off, expect, v, &e)) != 0)
        goto out;
    switch (e.kind) {
    case JNL__END_CORRUPT:
        fprintf(d->out, "  CORRUPT at offset %llu: %s; durable records follow at offset %llu\n",
                (unsigned long long)off, e.reason, (unsigned long long)e.later_off);
        rc = TM_ECORRUPT;
        break;
    case JNL__END_CLEAN:
        fprintf(d->out, "  end of log at offset %llu: %s; last LSN %llu\n", (unsigned long long)off, e.reason,
                (unsigned long long)(expect - 1));
        break;
    case JNL__END_TORN:
        fprintf(d->out,
                "  torn tail at offset %llu: %s; the log ends at LSN %llu; %llu record(s) of the unfinished "
                "batch would be dropped\n",
                (unsigned long long)off, e.reason, (unsigned long long)(expect - 1),
                (unsigned long long)e.same_batch);
        break;
    }
out:
    jnl__win_free(&w);
    d->io.close(fd);
    return rc;
}

int jnl_dump(const char *dir, FILE *out, bool verbose)
{
    jnl_dumper_t d = {.dir = dir, .out = out, .verbose = verbose};
    jnl__io_resolve(&d.io, NULL);
    jnl_seg_file_t *files;
    uint64_t *spares;
    size_t n, nspares;
    int rc = jnl__list(&d.io, dir, &files, &n, &spares, &nspares);
    if (rc) {
        fprintf(out, "journal %s: cannot list: %s\n", dir, tm_strerror(rc));
        return rc;
    }
    fprintf(out, "journal %s: %zu segment file(s), %zu spare(s)\n", dir, n, nspares);
    size_t nvalid = 0;
    for (; nvalid < n; nvalid++) {
        const jnl_seg_file_t *f = &files[nvalid];
        if (f->verdict == JNL_HDR_BAD_VERSION) {
            fprintf(out, "segment %llu: format version %u; this build reads version %u\n",
                    (unsigned long long)f->seq, f->hdr.version, JNL_FORMAT_VERSION);
            rc = TM_EVERSION;
            goto out;
        }
        if (f->verdict != JNL_HDR_OK || f->hdr.seq != f->seq)
            break;
        if (nvalid > 0 && f->hdr.journal_id != files[0].hdr.journal_id) {
            jnl__dump_hdr(&d, f);
            fprintf(out, "  FOREIGN: belongs to journal %016llx, not %016llx\n",
                    (unsigned long long)f->hdr.journal_id, (unsigned long long)files[0].hdr.journal_id);
            rc = TM_EFOREIGN;
            goto out;
        }
        if (nvalid > 0 && f->seq != files[nvalid - 1].seq + 1) {
            fprintf(out, "segment %llu: CORRUPT: segment %llu is missing\n", (unsigned long long)f->seq,
                    (unsigned long long)(files[nvalid - 1].seq + 1));
            rc = TM_ECORRUPT;
            goto out;
        }
    }
    for (size_t i = nvalid; i < n; i++) {
        bool later_valid = false;
        for (size_t k = i + 1; k < n; k++)
            later_valid |= files[k].verdict == JNL_HDR_OK && files[k].hdr.seq == files[k].seq;
        fprintf(out, "segment %llu: %s: %s\n", (unsigned long long)files[i].seq,
                later_valid ? "CORRUPT header" : "unfinished (ignored)",
                files[i].verdict != JNL_HDR_OK ? jnl_hdr_verdict_str(files[i].verdict)
                                                : "header sequence number differs from the file name");
        if (later_valid) {
            rc = TM_ECORRUPT;
            goto out;
        }
    }
    for (size_t i = 0; i < nvalid; i++) {
        const jnl_seg_file_t *f = &files[i];
        bool sealed = i + 1 < nvalid;
        jnl__dump_hdr(&d, f);
        uint64_t last;
        uint64_t limit = sealed ? files[i + 1].hdr.prev_end : f->hdr.segment_size;
        uint64_t next_first = sealed ? files[i + 1].hdr.first_lsn : 0;
        if (sealed && (limit < JNL_SEG_DATA_OFF || limit > f->file_size)) {
            fprintf(out, "  CORRUPT: the next segment says records end at %llu, outside this one\n",
                    (unsigned long long)limit);
            rc = TM_ECORRUPT;
            goto out;
        }
        rc = jnl__dump_records(&d, f, sealed, limit, next_first, &last);
        if (rc)
            goto out;
    }
    if (nvalid == 0)
        fprintf(out, "no segments: an empty journal\n");
out:
    if (rc && rc != TM_ECORRUPT && rc != TM_EVERSION && rc != TM_EFOREIGN)
        fprintf(out, "error: %s\n", tm_strerror(rc));
    tm_free(files);
    tm_free(spares);
    return rc;
}
