/*
 * Shared helpers for the Criterion suites: a temporary folder per test, a
 * seeded generator and deterministic payloads, a log sink that keeps every
 * line so a test can assert the exact text a condition produced, and small
 * file helpers for crafting segment bytes.
 *
 * Criterion runs each test in its own process, so the process-wide log sink
 * and the generator state are never shared between two tests.
 */
#ifndef TMT_H
#define TMT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <criterion/criterion.h>

#include "base/log.h"

/* ---- temporary folders ------------------------------------------------- */

/* Make a fresh folder under $TMPDIR (or /tmp) named after tag; aborts the test
 * on failure. out must hold PATH_MAX bytes. */
void tmt_mkdtemp(char *out, const char *tag);

/* Remove a folder and everything under it (no-op for an empty path). Kept
 * instead when TIDEMARK_KEEP_TMP is set, for looking at a failure. */
void tmt_rmtree(const char *path);

/* ---- seeded randomness and payloads ------------------------------------ */

typedef struct tmt_rng {
    uint64_t s;
} tmt_rng_t;

void tmt_rng_seed(tmt_rng_t *r, uint64_t seed);
uint64_t tmt_rng_next(tmt_rng_t *r);
/* Uniform in [lo, hi]. */
uint64_t tmt_rng_range(tmt_rng_t *r, uint64_t lo, uint64_t hi);

/* Mix two values into a seed (splitmix finaliser). */
uint64_t tmt_mix(uint64_t a, uint64_t b);

/* Fill buf with bytes determined by (seed, id). Compressible payloads are runs
 * of a few byte values (lz4 shrinks them a lot); the others are noise. */
void tmt_fill(uint8_t *buf, size_t len, uint64_t seed, uint64_t id, bool compressible);

/* Parse an unsigned environment variable; def when unset or malformed. */
uint64_t tmt_env_u64(const char *name, uint64_t def);

/* tm_errname, with 0 named "success" rather than "EUNKNOWN". */
const char *tmt_errname(int code);

/* ---- allocation count ---------------------------------------------------- */

/* Route every tm_malloc/tm_realloc/tm_free through a counter from now on
 * (and zero it). A harness that closes what it started checks
 * tmt_alloc_live() == 0: that proves closing frees everything, which
 * LeakSanitizer cannot (the suite suppresses leaks under libcriterion,
 * which every test's stack passes through). */
void tmt_alloc_count(void);
long tmt_alloc_live(void);

/* ---- log capture ------------------------------------------------------- */

/* Install a sink that keeps every line (and drop what was kept before). */
void tmt_log_capture(void);
/* Forget the captured lines, keep capturing. */
void tmt_log_clear(void);
/* True when a line at `level` equals the formatted text exactly. */
bool tmt_log_has(tm_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* How many captured lines start with prefix (any level). */
unsigned tmt_log_count_prefix(const char *prefix);
/* All captured lines as one string ("[level] text\n" each); static buffer. */
const char *tmt_log_text(void);

/* Assert that the exact line was logged at that level; print what was. */
#define tmt_assert_log(level, ...)                                                                            \
    do {                                                                                                      \
        char tmt__want[8192];                                                                                 \
        snprintf(tmt__want, sizeof tmt__want, __VA_ARGS__);                                                   \
        cr_assert(tmt_log_has((level), "%s", tmt__want), "expected log line [%s] \"%s\"; captured:\n%s",    \
                  tmt_level_name(level), tmt__want, tmt_log_text());                                          \
    } while (0)

const char *tmt_level_name(tm_log_level_t level);

/* ---- files -------------------------------------------------------------- */

/* dir/seg-<seq>.jnl into out (PATH_MAX bytes). */
void tmt_seg_path(char *out, const char *dir, uint64_t seq);
/* Whole-buffer pread/pwrite on a path; abort the test on failure. */
void tmt_file_read(const char *path, off_t off, void *buf, size_t len);
void tmt_file_write(const char *path, off_t off, const void *buf, size_t len);
void tmt_file_truncate(const char *path, off_t size);
/* Create (or replace) a file of size zero bytes. */
void tmt_file_create(const char *path, off_t size);
off_t tmt_file_size(const char *path);
bool tmt_file_exists(const char *path);
/* Flip one bit of the byte at off. */
void tmt_file_flip_bit(const char *path, off_t off, unsigned bit);
/* Number of entries in dir whose name starts with prefix. */
unsigned tmt_count_files(const char *dir, const char *prefix);

#endif
