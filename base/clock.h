/* Time and randomness helpers used across stages. */
#ifndef TM_CLOCK_H
#define TM_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Wall-clock time, nanoseconds since the Unix epoch. */
uint64_t tm_now_ns(void);

/* Monotonic time in nanoseconds, for durations. */
uint64_t tm_mono_ns(void);

/* Fill buf with bytes from the kernel's random source; 0 or -errno. */
int tm_random_bytes(void *buf, size_t len);

/* A random non-zero 64-bit value (salts, ids). Never fails: falls back to
 * mixing the clock and address if the random source is unavailable. */
uint64_t tm_random_u64(void);

/* Format ns-since-epoch as RFC 3339 UTC with microseconds into buf (>= 32 bytes). */
void tm_format_time(uint64_t ns, char *buf, size_t len);

#endif
