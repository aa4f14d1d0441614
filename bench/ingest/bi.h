/*
 * bench_ingest internals: the real `tidemark serve` as a child process and
 * what /proc says about it (bi_server.c), and the load generator: many
 * agent sessions on one libuv loop in this process (bi_load.c). The
 * journal-only figure and the raw write baseline come from bench/journal's
 * internals (bench/journal/bj.h), linked in unchanged. Only bench/ingest/
 * includes this.
 */
#ifndef TM_BENCH_INGEST_BI_H
#define TM_BENCH_INGEST_BI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench/journal/bj.h"
#include "wire/wire.h"

#define BI_SECRET_LEN 32u
/* Machine i is "bench-NNNNN" (1-based NNNNN). */
#define BI_NAME_FMT "bench-%05u"
/* Each machine has one disk this large: offsets wrap inside it. */
#define BI_DISK_SIZE (1ull << 40)
#define BI_DISK_NAME "vda"

/* Every machine the run registers, with its secret. */
typedef struct bi_machines {
    unsigned n;
    uint8_t (*secret)[BI_SECRET_LEN];
} bi_machines_t;

void bi_machine_name(unsigned i, char *buf, size_t len);

/* ---- the server child (bi_server.c) ---------------------------------- */

typedef struct bi_server {
    pid_t pid;
    int out_fd;         /* its stdout, read until the listening line */
    char addr[80];      /* "127.0.0.1:PORT" from "tidemark: agents on ..." */
    char log_path[512]; /* its stderr */
} bi_server_t;

/*
 * Make data_dir (which must not exist) and write data_dir/machines.conf
 * for every machine of m in the registry's documented format
 * (ingest/registry.h). 0 or -errno (printed).
 */
int bi_server_prepare(const char *data_dir, const bi_machines_t *m);

/*
 * Start `bin serve --data data_dir --agents 127.0.0.1:0`, its stderr going
 * to data_dir/../NAME.log, and wait (at most 30 s) for the line naming its
 * address. nofile > 0 sets the child's RLIMIT_NOFILE soft limit before exec;
 * nofile == 0 gives it the limit this bench was started with. 0 or a
 * negative code (printed, with the log's tail).
 */
int bi_server_start(const char *bin, const char *data_dir, const char *log_path, unsigned long nofile,
                    bi_server_t *s);

/*
 * SIGTERM, then wait (at most 60 s, then SIGKILL) for the exit. 0 when it
 * exited with status 0, else -1 (printed).
 */
int bi_server_stop(bi_server_t *s);

/* Remember this process's RLIMIT_NOFILE soft limit before main raises it:
 * the server gets that one unless told otherwise. */
void bi_server_note_nofile(void);

/* Lines of the server's log containing needle; the first one into first. */
unsigned bi_server_log_grep(const bi_server_t *s, const char *needle, char *first, size_t flen);

/* What /proc says about a process, now. */
typedef struct bi_proc {
    double cpu_s;      /* utime + stime of every thread */
    double loop_cpu_s; /* of the main thread (the server's event loop) */
    long rss_kib;      /* VmRSS */
    long hwm_kib;      /* VmHWM: peak RSS since start */
    long threads;
    uint64_t write_bytes; /* /proc/PID/io: bytes it caused to be written to storage */
} bi_proc_t;

/* 0 or -errno. */
int bi_proc_read(pid_t pid, bi_proc_t *out);

/* ---- the load generator (bi_load.c) ---------------------------------- */

typedef struct bi_load_cfg {
    const char *addr;    /* the server's "HOST:PORT" */
    size_t record;       /* bytes per write */
    unsigned per_frame;  /* writes per RECORDS frame */
    uint32_t window;     /* raw bytes unacked per agent (capped by the WELCOME's) */
    unsigned max_handshakes; /* sessions in their handshake at once (0: 64) */
    unsigned max_agents; /* sessions over the generator's life */
} bi_load_cfg_t;

typedef struct bi_load bi_load_t;

typedef struct bi_load_result {
    double secs;            /* first send to the last ack */
    uint64_t frames;        /* RECORDS frames acked */
    uint64_t writes;
    uint64_t payload_bytes; /* write data acked (durable) */
    uint64_t wire_bytes;    /* frame bytes sent */
    uint64_t lat_kept;
    double p50_us, p99_us, max_us; /* a frame's send to the ACK covering it */
    double client_cpu_s;    /* this process's CPU over the same span */
} bi_load_result_t;

/*
 * A load generator on a loop of its own. Checks once that the frames it
 * builds are byte for byte what wire_enc_records makes of the same writes.
 * 0, TM_EINVAL (a bad config) or -ENOMEM.
 */
int bi_load_new(const bi_load_cfg_t *cfg, const bj_pool_t *pool, bi_load_t **out);

/*
 * Open sessions for machines [first, first + n) of m and run the loop until
 * every one of them got its WELCOME (at most timeout_s). Busy ones stream
 * in bi_load_stream; the others stay idle. 0 or a negative code (printed).
 */
int bi_load_connect(bi_load_t *L, const bi_machines_t *m, unsigned first, unsigned n, bool busy, double timeout_s);

typedef void (*bi_sample_cb)(void *arg);

/*
 * Every busy session streams for `seconds` (or until `budget` payload bytes
 * were sent), then the loop runs until every frame sent is acked. With
 * sample_ms, cb(arg) runs that often meanwhile. 0 or a negative code.
 */
int bi_load_stream(bi_load_t *L, double seconds, uint64_t budget, unsigned sample_ms, bi_sample_cb cb, void *arg,
                   bi_load_result_t *out);

/* Payload bytes of the journal record ingest writes for one of our frames
 * (batch header + the RECORDS body), for the journal-only comparison. */
size_t bi_load_journal_record(const bi_load_t *L);

/* Close every session and free. */
void bi_load_free(bi_load_t *L);

#endif
