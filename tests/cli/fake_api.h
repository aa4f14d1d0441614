/*
 * A stand-in for the appliance's API in the client tests: a thread serving
 * canned HTTP answers on 127.0.0.1 (a port picked at run time), one
 * connection at a time, each closed after its answer. It records what each
 * request asked for, so a test can check what the client sent. A test
 * fixture only: no keep-alive, no chunked bodies, no concurrency.
 */
#ifndef TM_TESTS_CLI_FAKE_API_H
#define TM_TESTS_CLI_FAKE_API_H

#include <stddef.h>

/* One canned answer. The first route whose method and target match (target
 * with its query string, as sent) answers; a route with times > 0 answers
 * that many requests and then lets the next matching one answer. */
typedef struct fa_route {
    const char *method;
    const char *target;
    int status;
    const char *body;
    unsigned times; /* 0: every time */
} fa_route_t;

/* What one request carried; strings are "" when absent. */
typedef struct fa_request {
    char method[16];
    char target[512];
    char authorization[256];
    char content_type[128];
    char body[4096];
} fa_request_t;

#define FA_MAX_REQUESTS 256

typedef struct fake_api fake_api_t;

/* Start serving routes (kept by reference: they must outlive the server). */
fake_api_t *fa_start(const fa_route_t *routes, size_t n);

/* "127.0.0.1:PORT" */
const char *fa_addr(const fake_api_t *fa);

/* How many requests were answered so far (thread-safe). */
size_t fa_count(fake_api_t *fa);

/* A copy of request i (0-based, in arrival order). */
fa_request_t fa_request(fake_api_t *fa, size_t i);

/* Stop the thread and free everything. */
void fa_stop(fake_api_t *fa);

#endif
