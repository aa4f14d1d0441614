/*
 * The API side of `tidemark serve`: the appliance id, the bearer token, the
 * jobs and the HTTP server with the v1 routes, started on the serve loop
 * once ingest and the points stage run, and stopped before them.
 */
#ifndef TM_CLI_SERVE_API_H
#define TM_CLI_SERVE_API_H

#include <stddef.h>
#include <uv.h>

#include "api/http.h"
#include "api/jobs.h"
#include "api/token.h"
#include "api/v1.h"
#include "consistency/consistency.h"

#define CLI_APPLIANCE_ID_FILE "appliance.id"

typedef struct cli_api {
    api_v1_t v1;
    api_jobs_t *jobs;
    tm_http_server_t *http;
    char token[TM_API_TOKEN_HEX + 1];
    char appliance[17];
    char nbd[80];
    void (*stopped)(void *arg);
    void *arg;
} cli_api_t;

/* The appliance's id: DATA/appliance.id (16 hex digits), made at the first
 * start. 0, or -errno / TM_ECORRUPT with err saying why. */
int cli_appliance_id(const char *data_dir, char out[17], char *err, size_t errlen);

/* Start serving the API on addr. 0, or nonzero with err saying why. */
int cli_api_start(cli_api_t *a, uv_loop_t *loop, jnl_t *jnl, pts_t *pts, ingest_t *ig, tgt_exports_t *exports, cns_t *cns,
                  const char *data_dir, const char *version, const char *addr, const char *nbd_addr, char *err,
                  size_t errlen);

/* The address listened on. */
void cli_api_address(const cli_api_t *a, char *buf, size_t len);

/* Close the server (requests in flight finish), stop the jobs, then
 * cb(arg) on the loop. */
void cli_api_stop(cli_api_t *a, void (*cb)(void *arg), void *arg);

#endif
