/* Statistics, random fill and cleanup for bench_journal. */
#include "bench/journal/bj.h"

#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bj__cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bj__cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

double bj_median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, bj__cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bj_sort_u64(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, bj__cmp_u64);
}

uint64_t bj_percentile(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    /* Nearest rank: the smallest value with at least p of the samples at or below it. */
    double want = p * (double)n;
    size_t rank = (size_t)want;
    if ((double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

void bj_fill_random(uint8_t *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed ? seed : 0x9e3779b97f4a7c15ull;
    size_t i = 0;
    while (i < len) {
        /* xorshift64*: fast, and its output gives lz4 nothing to match. */
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t r = x * 0x2545f4914f6cdd1dull;
        for (int k = 0; k < 8 && i < len; k++, i++)
            buf[i] = (uint8_t)(r >> (8 * k));
    }
}

static int bj__rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0) {
        fprintf(stderr, "bench_journal: remove %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int bj_rmtree(const char *path)
{
    /* Depth first so folders are empty when their turn comes; never follow links. */
    if (nftw(path, bj__rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return errno ? -errno : -EIO;
    return 0;
}

/* "64K", "1M", "4096" -> bytes; false when malformed or zero. */
bool bj_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || v == 0 || s[0] == '-')
        return false;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: break;
    }
    if (*end == 'i' && shift)
        end++;
    if ((*end == 'b' || *end == 'B') && shift)
        end++;
    if (*end != '\0' || v > (UINT64_MAX >> shift))
        return false;
    *out = (uint64_t)v << shift;
    return true;
}

bool bj_parse_list(const char *arg, uint64_t *out, unsigned max, unsigned *n)
{
    char buf[512];
    if (strlen(arg) >= sizeof buf)
        return false;
    strcpy(buf, arg);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n == max || !bj_parse_size(tok, &out[*n]))
            return false;
        (*n)++;
    }
    return *n > 0;
}

const char *bj_size_str(uint64_t v, char *buf, size_t len)
{
    if (v >= (1u << 20) && v % (1u << 20) == 0)
        snprintf(buf, len, "%" PRIu64 " MiB", v >> 20);
    else if (v >= 1024 && v % 1024 == 0)
        snprintf(buf, len, "%" PRIu64 " KiB", v >> 10);
    else
        snprintf(buf, len, "%" PRIu64 " B", v);
    return buf;
}

/* Room for what a run writes beyond the estimate: headers, the last batch. */
#define BJ_WARM_MARGIN (64u << 20)

int bj_prewarm_in(const char *tmpdir, uint64_t bytes, const bj_pool_t *pool)
{
    char path[PATH_MAX];
    if (bj_interrupted)
        return -EINTR;
    if (snprintf(path, sizeof path, "%s/prewarm", tmpdir) >= (int)sizeof path)
        return -ENAMETOOLONG;
    return bj_prewarm(path, bytes + BJ_WARM_MARGIN, pool);
}
