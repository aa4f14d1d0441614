#include "clock.h"

#include <errno.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

uint64_t tm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t tm_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int tm_random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* splitmix64 finaliser: spreads a weak seed over all bits. */
static uint64_t tm__mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t tm_random_u64(void)
{
    uint64_t v = 0;
    if (tm_random_bytes(&v, sizeof v) != 0)
        v = tm__mix(tm_mono_ns() ^ (uint64_t)(uintptr_t)&v);
    return v ? v : 1;
}

void tm_format_time(uint64_t ns, char *buf, size_t len)
{
    time_t s = (time_t)(ns / 1000000000u);
    struct tm tmv;
    char day[24];
    gmtime_r(&s, &tmv);
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tmv);
    snprintf(buf, len, "%s.%06uZ", day, (unsigned)((ns % 1000000000u) / 1000u));
}
