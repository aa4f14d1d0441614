#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static tm_log_sink_cb tm__sink;
static void *tm__sink_arg;
static tm_log_level_t tm__level = TM_LOG_INFO;

static const char *const tm__level_names[] = {"debug", "info", "warn", "error"};

void tm_log_set_sink(tm_log_sink_cb sink, void *arg)
{
    tm__sink = sink;
    tm__sink_arg = arg;
}

void tm_log_set_level(tm_log_level_t level)
{
    tm__level = level;
}

void tm_log(tm_log_level_t level, const char *fmt, ...)
{
    if (level < tm__level)
        return;

    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);

    if (tm__sink) {
        tm__sink(level, text, tm__sink_arg);
        return;
    }

    struct timespec ts;
    struct tm tmv;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tmv);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tmv);
    /* One fprintf per line keeps lines from concurrent threads whole. */
    fprintf(stderr, "%s.%03ldZ %-5s %s\n", when, ts.tv_nsec / 1000000, tm__level_names[level], text);
}
