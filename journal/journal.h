/*
 * The write-ahead journal: one append-only, segmented log per appliance.
 *
 * What it promises:
 *   - jnl_append() either returns an error (and its callback never runs) or
 *     returns 0 and the callback runs exactly once: with status 0 only after
 *     the record is on disk (written and fdatasync'ed), or with an error.
 *   - Records get a journal-wide log sequence number (LSN), 1, 2, 3, ...
 *     without gaps, in the order jnl_append() was called.
 *   - jnl_open() recovers: every record that was reported durable is kept; a
 *     torn tail is cut off and logged; corruption in front of durable records
 *     is refused with its position, never skipped.
 *
 * Threads: jnl_append(), jnl_wait_durable(), jnl_get_stats() and
 * jnl_retire() may be called from any thread. One writer thread per journal
 * does all writes and syncs and runs the completion callbacks. A reader is
 * used by one thread at a time. The format is in journal/format.h and
 * docs/journal-format.md.
 */
#ifndef TM_JOURNAL_H
#define TM_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "journal/format.h"

typedef struct jnl jnl_t;
typedef struct jnl_reader jnl_reader_t;

/* Where a record sits: segment sequence number and byte offset inside it. */
typedef struct jnl_pos {
    uint64_t seg;
    uint64_t off;
} jnl_pos_t;

/*
 * The journal's system calls, replaceable for fault injection (SQLite's
 * syscall table). Each behaves like the call it is named after: -1 and errno
 * on failure. fallocate returns 0 or -1 with errno (not posix_fallocate's
 * return-the-error convention). NULL members fall back to the real call.
 */
typedef struct jnl_io {
    int (*open)(const char *path, int flags, mode_t mode);
    int (*close)(int fd);
    ssize_t (*pread)(int fd, void *buf, size_t len, off_t off);
    ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
    int (*fdatasync)(int fd);
    int (*fsync)(int fd);
    int (*fallocate)(int fd, off_t off, off_t len);
    int (*rename)(const char *from, const char *to);
    int (*unlink)(const char *path);
} jnl_io_t;

typedef struct jnl_options {
    uint64_t segment_size;   /* bytes per segment file; 0 = JNL_DEFAULT_SEGMENT */
    uint32_t max_record;     /* largest payload accepted; 0 = JNL_DEFAULT_MAX_RECORD; a record of
                                this size must fit an empty segment (segment_size >= max_record +
                                JNL_SEG_DATA_OFF + JNL_REC_OVERHEAD), else jnl_open says TM_EINVAL */
    uint32_t batch_bytes;    /* a batch is closed when it reaches this; 0 = default */
    unsigned spare_segments; /* retired segments kept for reuse; default 2 */
    unsigned retry_ms;       /* after a failure, ms between recovery attempts (0: 1 s on its own, and at every append) */
    bool read_only;          /* open to inspect: no writer, no appends, nothing changed */
    bool verify_all;         /* check every record of sealed segments too, not only the last */
    const jnl_io_t *io;      /* NULL = the real system calls */
} jnl_options_t;

#define JNL_DEFAULT_SEGMENT (64u << 20)
#define JNL_DEFAULT_MAX_RECORD (8u << 20)
#define JNL_DEFAULT_BATCH (8u << 20)
#define JNL_MIN_SEGMENT JNL_FMT_MIN_SEGMENT

/* What recovery found at the end of the log, kept for reporting. */
typedef enum jnl_end_kind {
    JNL_END_EMPTY,     /* no segment yet: a new journal */
    JNL_END_CLEAN,     /* the log ends where unwritten space starts */
    JNL_END_TORN,      /* a torn tail was cut off (logged) */
} jnl_end_kind_t;

typedef struct jnl_stats {
    uint64_t journal_id;
    uint64_t first_lsn;    /* oldest LSN still held (after retirement) */
    uint64_t durable_lsn;  /* every LSN <= this is on disk; 0 = none */
    uint64_t next_lsn;     /* the LSN the next append will get */
    uint64_t segments;     /* segment files in the log */
    uint64_t spares;       /* retired files kept for reuse */
    uint64_t disk_bytes;   /* space the journal's files take on disk */
    uint64_t appends;      /* records made durable since open */
    uint64_t batches;      /* write + fdatasync rounds since open */
    uint64_t bytes_written;
    uint64_t queued_bytes; /* appended, not yet durable */
    int error;             /* the sticky failure, 0 if none */
    /* recovery at open */
    jnl_end_kind_t end_kind;
    jnl_pos_t end_pos;     /* where the log ends (the next record would go) */
    char end_reason[96];   /* why recovery stopped there */
    uint64_t torn_records; /* valid-looking records of the unfinished batch dropped */
} jnl_stats_t;

/*
 * Open (creating if needed) the journal in dir, recover, and start the writer.
 * Errors: TM_EVERSION (a segment of an unknown format version), TM_ECORRUPT
 * (bad data in front of durable records; logged with its position),
 * TM_EFOREIGN (segments of two journals), -errno. *out is set only on 0.
 */
int jnl_open(const char *dir, const jnl_options_t *opts, jnl_t **out);

/*
 * Stop: appends made before the call are completed (durable or failed), the
 * writer exits, files are closed. Later calls on j return TM_ECLOSED. Safe to
 * call twice. Must not be called from a completion callback.
 */
void jnl_close(jnl_t *j);

/* Free a closed journal (closes it first if needed). */
void jnl_destroy(jnl_t *j);

typedef struct jnl_append_req jnl_append_req_t;
typedef void (*jnl_append_cb)(jnl_append_req_t *req, int status);

/* Caller-owned; must stay alive until its callback has run. */
struct jnl_append_req {
    void *data;        /* the caller's */
    uint64_t lsn;      /* set by jnl_append() */
    jnl_pos_t pos;     /* set by jnl_append() */
    /* private */
    jnl_append_cb cb_;
    jnl_append_req_t *next_;
};

typedef struct jnl_buf {
    const void *base;
    size_t len;
} jnl_buf_t;

/* Append flags. */
#define JNL_APPEND_COMPRESS 0x1u /* try lz4 in the caller's thread; kept only if smaller */

/*
 * Queue a record of the given type (1..255) whose payload is the
 * concatenation of bufs. The payload is copied: bufs may be reused when this
 * returns. On 0, req->lsn and req->pos are set and cb runs exactly once, on
 * the writer thread: keep it short and never block in it (the next batch
 * waits for it); an event loop should only post the result to itself. Errors (cb never runs): TM_EINVAL (type 0), TM_ETOOBIG
 * (payload over max_record), TM_ECLOSED, -EROFS (opened read_only),
 * TM_EFAILED (a failure is not cleared yet; see jnl_recover()), -ENOMEM.
 */
int jnl_append(jnl_t *j, jnl_append_req_t *req, uint8_t type, const jnl_buf_t *bufs, unsigned nbufs,
               unsigned flags, jnl_append_cb cb);

/* Append and wait until durable; convenience for tools and tests. */
int jnl_append_wait(jnl_t *j, uint8_t type, const void *payload, size_t len, unsigned flags,
                    uint64_t *lsn_out);

/* Wait until durable_lsn >= lsn or timeout (ms; <0 waits forever).
 * 0 (also after close, for an LSN that was made durable), -ETIMEDOUT,
 * TM_ECLOSED (closed before lsn became durable). */
int jnl_wait_durable(jnl_t *j, uint64_t lsn, int timeout_ms);

void jnl_get_stats(jnl_t *j, jnl_stats_t *st);

/*
 * After a write or sync failure the journal refuses appends (TM_EFAILED)
 * until it has moved to a fresh segment whose header pins the end of the
 * durable log. The writer tries that at once after the failure, then on its
 * own every retry_ms (1 s when 0), and when appends come (at most every
 * retry_ms). jnl_recover() tries it now and waits: 0 when the journal
 * accepts appends again, else the error.
 */
int jnl_recover(jnl_t *j);

/*
 * Drop whole segments all of whose records have an LSN below `below`. The
 * segment being written is never dropped. Dropped files are kept as spares
 * (up to spare_segments) or unlinked. *dropped (may be NULL) gets the count.
 */
int jnl_retire(jnl_t *j, uint64_t below, unsigned *dropped);

/* Bytes of durable records from pos (a record boundary, e.g. where a
 * reader is) to the durable end: how far a reader lags. Segments below the
 * oldest held count as nothing. */
uint64_t jnl_bytes_after(jnl_t *j, jnl_pos_t pos);

/* A record as read back. data is valid until the next call on the reader. */
typedef struct jnl_record {
    uint64_t lsn;
    uint64_t time_ns; /* wall clock at append */
    uint8_t type;
    jnl_pos_t pos;
    uint32_t stored_len; /* bytes on disk for the payload */
    bool compressed;
    const uint8_t *data; /* the payload, decompressed */
    uint32_t len;
} jnl_record_t;

/*
 * A reader from `from_lsn` (0 = the oldest held). It sees only durable
 * records and may run while appends go on: jnl_reader_next() returns -EAGAIN
 * at the durable end; call again later (see jnl_wait_durable()).
 * Errors: TM_ERETIRED (from_lsn is below the oldest held), TM_ECORRUPT.
 */
int jnl_reader_open(jnl_t *j, uint64_t from_lsn, jnl_reader_t **out);
int jnl_reader_next(jnl_reader_t *r, jnl_record_t *rec);
void jnl_reader_close(jnl_reader_t *r);

/* Read the record at pos (as jnl_append_req.pos or jnl_record.pos gave it).
 * (*buf, *cap) is a caller-owned buffer grown with tm_realloc as needed; free it
 * with tm_free. Errors: TM_ERETIRED, TM_ENOTFOUND, TM_ECORRUPT, -errno. */
int jnl_read_at(jnl_t *j, jnl_pos_t pos, jnl_record_t *rec, uint8_t **buf, size_t *cap);

/*
 * Read len bytes at offset `at` of the payload of the record at pos, straight
 * from its segment file, without reading or checking the rest of the record:
 * for readers that verify what they read with a checksum of their own (the
 * target reader checks each write's XXH3). The record's header is checked:
 * it must have LSN lsn, belong to the segment's current life, be stored
 * uncompressed (else TM_EINVAL) and hold the range. Errors: TM_ERETIRED,
 * TM_ENOTFOUND, TM_ECORRUPT (logged with the position), -errno.
 */
int jnl_read_part(jnl_t *j, jnl_pos_t pos, uint64_t lsn, uint32_t at, void *buf, uint32_t len);

/*
 * Print the segment headers and records of the journal in dir to out, one
 * line each (records only when verbose), without changing anything, and stop
 * at the first bad segment or record with its position and reason. Returns
 * 0 when the log is whole to its end (a clean end or a torn tail is fine:
 * recovery handles both), TM_ECORRUPT, TM_EVERSION, TM_EFOREIGN or -errno.
 */
int jnl_dump(const char *dir, FILE *out, bool verbose);

#endif
