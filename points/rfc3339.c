/*
 * RFC 3339 times for @TIME selectors and query bounds:
 * YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm), `T` and `Z` in either
 * case. Up to nine fraction digits are kept (nanoseconds); more are refused
 * rather than silently rounded.
 */
#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "points/points.h"

/* n digits at *s as a number; advances *s. -1 if they are not digits. */
static long pts__digits(const char **s, int n)
{
    long v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*s)[i]))
            return -1;
        v = v * 10 + ((*s)[i] - '0');
    }
    *s += n;
    return v;
}

static int pts__expect(const char **s, char c)
{
    if (**s != c)
        return -1;
    (*s)++;
    return 0;
}

int pts_parse_time(const char *s, uint64_t *ns)
{
    struct tm tm = {0};
    long y = pts__digits(&s, 4);
    if (y < 1970 || pts__expect(&s, '-'))
        return TM_EINVAL;
    long mo = pts__digits(&s, 2);
    if (mo < 1 || mo > 12 || pts__expect(&s, '-'))
        return TM_EINVAL;
    long d = pts__digits(&s, 2);
    if (d < 1 || d > 31 || (*s != 'T' && *s != 't'))
        return TM_EINVAL;
    s++;
    long h = pts__digits(&s, 2);
    if (h < 0 || h > 23 || pts__expect(&s, ':'))
        return TM_EINVAL;
    long mi = pts__digits(&s, 2);
    if (mi < 0 || mi > 59 || pts__expect(&s, ':'))
        return TM_EINVAL;
    long sec = pts__digits(&s, 2);
    if (sec < 0 || sec > 60) /* 60: a leap second, counted as the next one */
        return TM_EINVAL;
    uint64_t frac = 0;
    if (*s == '.') {
        s++;
        int n = 0;
        while (isdigit((unsigned char)*s)) {
            if (++n > 9)
                return TM_EINVAL;
            frac = frac * 10 + (uint64_t)(*s++ - '0');
        }
        if (n == 0)
            return TM_EINVAL;
        for (; n < 9; n++)
            frac *= 10;
    }
    long off = 0;
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        int sign = *s++ == '-' ? -1 : 1;
        long oh = pts__digits(&s, 2);
        if (oh < 0 || oh > 23 || pts__expect(&s, ':'))
            return TM_EINVAL;
        long om = pts__digits(&s, 2);
        if (om < 0 || om > 59)
            return TM_EINVAL;
        off = sign * (oh * 3600 + om * 60);
    } else {
        return TM_EINVAL;
    }
    if (*s)
        return TM_EINVAL;
    tm.tm_year = (int)(y - 1900);
    tm.tm_mon = (int)(mo - 1);
    tm.tm_mday = (int)d;
    tm.tm_hour = (int)h;
    tm.tm_min = (int)mi;
    tm.tm_sec = (int)sec;
    time_t t = timegm(&tm);
    /* timegm normalises 31 February into March: refuse instead */
    struct tm back;
    if (t == (time_t)-1 || !gmtime_r(&t, &back) || (sec < 60 && back.tm_mday != d))
        return TM_EINVAL;
    int64_t secs = (int64_t)t - off;
    if (secs < 0)
        return TM_EINVAL;
    *ns = (uint64_t)secs * 1000000000u + frac;
    return 0;
}
