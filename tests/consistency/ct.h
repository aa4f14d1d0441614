/*
 * Helpers of the consistency tests: `tidemark serve` with a config file,
 * its addresses and API token, and the API through libcurl.
 */
#ifndef TM_TESTS_CONSISTENCY_CT_H
#define TM_TESTS_CONSISTENCY_CT_H

#include <jansson.h>

#include "tests/agent/at.h"

/* The addresses of the last ct_serve. */
extern char ct_api[64], ct_agents[64], ct_nbd[64];

/* Start serve on data with conf and ports picked at run time; wait until
 * it serves and read its addresses and token. */
void ct_serve(at_child_t *srv, const char *data, const char *conf);
/* Only start it (for a serve expected to refuse). */
void ct_serve_spawn(at_child_t *srv, const char *data, const char *conf);

/* GET or POST (body non-NULL) path: the status; *out the answer's JSON. */
long ct_http(const char *path, const char *body, json_t **out);
/* Any method (body may be NULL): the status; *out the answer's JSON. */
long ct_request(const char *method, const char *path, const char *body, json_t **out);
/* GET path, asserting 200: the body as text (free it). */
char *ct_get_text(const char *path);
/* GET path, asserting 200. */
json_t *ct_get_ok(const char *path);

#endif
