/* Shared test helpers; the contracts are in tmt.h. */
#include "tmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/mem.h"
#include "journal/format.h"

/* ---- temporary folders ------------------------------------------------- */

void tmt_mkdtemp(char *out, const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(out, PATH_MAX, "%s/tidemark-%s-XXXXXX", base, tag);
    cr_assert_not_null(mkdtemp(out), "mkdtemp(%s): %s", out, strerror(errno));
}

static int tmt__rm_one(const char *path, const struct stat *st, int kind, struct FTW *ftw)
{
    (void)st;
    (void)kind;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

void tmt_rmtree(const char *path)
{
    if (path == NULL || path[0] == '\0')
        return;
    if (getenv("TIDEMARK_KEEP_TMP") != NULL) {
        fprintf(stderr, "kept %s\n", path);
        return;
    }
    nftw(path, tmt__rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- seeded randomness and payloads ------------------------------------ */

uint64_t tmt_mix(uint64_t a, uint64_t b)
{
    uint64_t z = a + 0x9e3779b97f4a7c15ull * (b + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void tmt_rng_seed(tmt_rng_t *r, uint64_t seed)
{
    r->s = seed;
}

uint64_t tmt_rng_next(tmt_rng_t *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    uint64_t z = r->s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t tmt_rng_range(tmt_rng_t *r, uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + tmt_rng_next(r) % (hi - lo + 1);
}

void tmt_fill(uint8_t *buf, size_t len, uint64_t seed, uint64_t id, bool compressible)
{
    tmt_rng_t r;
    tmt_rng_seed(&r, tmt_mix(seed, id));
    size_t i = 0;
    if (compressible) {
        /* Runs of 8..64 equal bytes drawn from four values. */
        while (i < len) {
            uint64_t v = tmt_rng_next(&r);
            size_t run = 8 + (size_t)(v % 57);
            uint8_t b = (uint8_t)('a' + ((v >> 8) & 3));
            for (size_t k = 0; k < run && i < len; k++)
                buf[i++] = b;
        }
        return;
    }
    while (i < len) {
        uint64_t v = tmt_rng_next(&r);
        for (int k = 0; k < 8 && i < len; k++)
            buf[i++] = (uint8_t)(v >> (8 * k));
    }
}

uint64_t tmt_env_u64(const char *name, uint64_t def)
{
    const char *s = getenv(name);
    if (s == NULL || s[0] == '\0')
        return def;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0')
        return def;
    return v;
}

const char *tmt_errname(int code)
{
    return code == 0 ? "success" : tm_errname(code);
}

/* ---- log capture ------------------------------------------------------- */

#define TMT_LOG_MAX 512

static pthread_mutex_t tmt__log_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    tm_log_level_t level;
    char text[1024];
} tmt__lines[TMT_LOG_MAX];
static unsigned tmt__nlines;
static char tmt__dump[TMT_LOG_MAX * 64];

const char *tmt_level_name(tm_log_level_t level)
{
    switch (level) {
    case TM_LOG_DEBUG: return "debug";
    case TM_LOG_INFO: return "info";
    case TM_LOG_WARN: return "warn";
    case TM_LOG_ERROR: return "error";
    }
    return "?";
}

static void tmt__sink(tm_log_level_t level, const char *line, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&tmt__log_mu);
    if (tmt__nlines < TMT_LOG_MAX) {
        tmt__lines[tmt__nlines].level = level;
        snprintf(tmt__lines[tmt__nlines].text, sizeof tmt__lines[0].text, "%s", line);
        tmt__nlines++;
    }
    pthread_mutex_unlock(&tmt__log_mu);
}

void tmt_log_capture(void)
{
    tmt_log_clear();
    tm_log_set_sink(tmt__sink, NULL);
}

void tmt_log_clear(void)
{
    pthread_mutex_lock(&tmt__log_mu);
    tmt__nlines = 0;
    pthread_mutex_unlock(&tmt__log_mu);
}

bool tmt_log_has(tm_log_level_t level, const char *fmt, ...)
{
    char want[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    bool found = false;
    pthread_mutex_lock(&tmt__log_mu);
    for (unsigned i = 0; i < tmt__nlines && !found; i++)
        found = tmt__lines[i].level == level && strcmp(tmt__lines[i].text, want) == 0;
    pthread_mutex_unlock(&tmt__log_mu);
    return found;
}

unsigned tmt_log_count_prefix(const char *prefix)
{
    unsigned n = 0;
    size_t pl = strlen(prefix);
    pthread_mutex_lock(&tmt__log_mu);
    for (unsigned i = 0; i < tmt__nlines; i++)
        n += strncmp(tmt__lines[i].text, prefix, pl) == 0;
    pthread_mutex_unlock(&tmt__log_mu);
    return n;
}

const char *tmt_log_text(void)
{
    size_t used = 0;
    tmt__dump[0] = '\0';
    pthread_mutex_lock(&tmt__log_mu);
    for (unsigned i = 0; i < tmt__nlines && used + 1 < sizeof tmt__dump; i++) {
        int n = snprintf(tmt__dump + used, sizeof tmt__dump - used, "  [%s] %s\n", tmt_level_name(tmt__lines[i].level),
                         tmt__lines[i].text);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    pthread_mutex_unlock(&tmt__log_mu);
    if (used == 0)
        return "  (nothing)\n";
    return tmt__dump;
}

/* ---- files -------------------------------------------------------------- */

void tmt_seg_path(char *out, const char *dir, uint64_t seq)
{
    char name[64];
    snprintf(name, sizeof name, JNL_SEG_NAME_FMT, (unsigned long long)seq);
    snprintf(out, PATH_MAX, "%s/%s", dir, name);
}

void tmt_file_read(const char *path, off_t off, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert(fd >= 0, "open(%s): %s", path, strerror(errno));
    ssize_t n = pread(fd, buf, len, off);
    int e = errno;
    close(fd);
    cr_assert(n == (ssize_t)len, "pread(%s, %zu at %lld) = %zd: %s", path, len, (long long)off, n, strerror(e));
}

void tmt_file_write(const char *path, off_t off, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    cr_assert(fd >= 0, "open(%s): %s", path, strerror(errno));
    ssize_t n = pwrite(fd, buf, len, off);
    int e = errno;
    close(fd);
    cr_assert(n == (ssize_t)len, "pwrite(%s, %zu at %lld) = %zd: %s", path, len, (long long)off, n, strerror(e));
}

void tmt_file_truncate(const char *path, off_t size)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    cr_assert(fd >= 0, "open(%s): %s", path, strerror(errno));
    int rc = ftruncate(fd, size);
    int e = errno;
    close(fd);
    cr_assert(rc == 0, "ftruncate(%s, %lld): %s", path, (long long)size, strerror(e));
}

void tmt_file_create(const char *path, off_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert(fd >= 0, "create(%s): %s", path, strerror(errno));
    int rc = ftruncate(fd, size);
    int e = errno;
    close(fd);
    cr_assert(rc == 0, "ftruncate(%s, %lld): %s", path, (long long)size, strerror(e));
}

off_t tmt_file_size(const char *path)
{
    struct stat st;
    cr_assert(stat(path, &st) == 0, "stat(%s): %s", path, strerror(errno));
    return st.st_size;
}

bool tmt_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

void tmt_file_flip_bit(const char *path, off_t off, unsigned bit)
{
    uint8_t b;
    tmt_file_read(path, off, &b, 1);
    b ^= (uint8_t)(1u << (bit & 7));
    tmt_file_write(path, off, &b, 1);
}

unsigned tmt_count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "opendir(%s): %s", dir, strerror(errno));
    unsigned n = 0;
    size_t pl = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, pl) == 0;
    closedir(d);
    return n;
}

/* ---- allocation count ---------------------------------------------------- */

static atomic_long tmt__live;

static void *tmt__malloc(size_t n)
{
    void *p = malloc(n);
    if (p)
        atomic_fetch_add(&tmt__live, 1);
    return p;
}

static void *tmt__realloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q && !p)
        atomic_fetch_add(&tmt__live, 1);
    return q;
}

static void tmt__free(void *p)
{
    if (p)
        atomic_fetch_sub(&tmt__live, 1);
    free(p);
}

void tmt_alloc_count(void)
{
    static const tm_allocator_t counting = {tmt__malloc, tmt__realloc, tmt__free};
    atomic_store(&tmt__live, 0);
    tm_set_allocator(&counting);
}

long tmt_alloc_live(void)
{
    return atomic_load(&tmt__live);
}
