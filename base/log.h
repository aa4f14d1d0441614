/*
 * Logging: one line per event, "<time> <level> <text>", to stderr by default.
 *
 * The sink is replaceable so tests can assert the exact line a condition
 * produced (a torn tail, a refused version). Thread-safe: each line is
 * formatted into a local buffer and handed to the sink in one call.
 */
#ifndef TM_LOG_H
#define TM_LOG_H

#include <stdarg.h>

typedef enum { TM_LOG_DEBUG, TM_LOG_INFO, TM_LOG_WARN, TM_LOG_ERROR } tm_log_level_t;

/* Receives each formatted line (no trailing newline). */
typedef void (*tm_log_sink_cb)(tm_log_level_t level, const char *line, void *arg);

/* Replace the sink; NULL restores stderr. Returns nothing: it cannot fail. */
void tm_log_set_sink(tm_log_sink_cb sink, void *arg);

/* Lines below this level are dropped. Default TM_LOG_INFO. */
void tm_log_set_level(tm_log_level_t level);

void tm_log(tm_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define tm_debug(...) tm_log(TM_LOG_DEBUG, __VA_ARGS__)
#define tm_info(...) tm_log(TM_LOG_INFO, __VA_ARGS__)
#define tm_warn(...) tm_log(TM_LOG_WARN, __VA_ARGS__)
#define tm_error(...) tm_log(TM_LOG_ERROR, __VA_ARGS__)

#endif
