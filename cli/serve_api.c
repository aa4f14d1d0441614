/* The API side of `tidemark serve` (serve_api.h). */
#include "cli/serve_api.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/addr.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/file.h"

static bool cli__hex16(const char *s)
{
    for (int i = 0; i < 16; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

int cli_appliance_id(const char *data_dir, char out[17], char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", data_dir, CLI_APPLIANCE_ID_FILE);
    FILE *f = fopen(path, "r");
    if (f) {
        char buf[40] = {0};
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        if (n < 16 || !cli__hex16(buf) || (n > 16 && buf[16] != '\n')) {
            snprintf(err, errlen, "%s does not hold an appliance id (16 hex digits)", path);
            return TM_ECORRUPT;
        }
        memcpy(out, buf, 16);
        out[16] = '\0';
        return 0;
    }
    if (errno != ENOENT) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -errno;
    }
    /* First start: a random id, written whole or not at all. */
    char text[18];
    snprintf(out, 17, "%016" PRIx64, tm_random_u64());
    snprintf(text, sizeof text, "%s\n", out);
    int rc = tm_file_replace(data_dir, CLI_APPLIANCE_ID_FILE, text, 17, 0644);
    if (rc) {
        snprintf(err, errlen, "cannot write %s: %s", path, tm_strerror(rc));
        return rc;
    }
    return 0;
}

int cli_api_start(cli_api_t *a, uv_loop_t *loop, jnl_t *jnl, pts_t *pts, ingest_t *ig, tgt_exports_t *exports, cns_t *cns,
                  const char *data_dir, const char *version, const char *addr, const char *nbd_addr, char *err,
                  size_t errlen)
{
    snprintf(a->nbd, sizeof a->nbd, "%s", nbd_addr ? nbd_addr : "");
    int rc = cli_appliance_id(data_dir, a->appliance, err, errlen);
    if (rc)
        return rc;
    rc = tm_api_token_load_or_create(data_dir, a->token, err, errlen);
    if (rc)
        return rc;
    rc = api_jobs_new(jnl, pts, &a->jobs);
    if (rc) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    a->v1 = (api_v1_t){.loop = loop, .jnl = jnl, .pts = pts, .ingest = ig, .jobs = a->jobs,
                       .data_dir = data_dir, .version = version, .nbd = a->nbd[0] ? a->nbd : NULL,
                       .exports = exports, .cns = cns};
    rc = api_loopq_new(loop, &a->v1.loopq);
    if (rc) {
        snprintf(err, errlen, "cannot make the jobs' loop queue: %s", tm_strerror(rc));
        goto out_jobs;
    }
    tm_http_route_t routes[API_V1_NROUTES];
    size_t n = api_v1_routes(&a->v1, routes);
    tm_http_config_t hc = {.appliance = a->appliance, .token = a->token, .routes = routes, .nroutes = n};
    rc = tm_http_server_new(loop, &hc, &a->http);
    if (rc) {
        snprintf(err, errlen, "cannot make the API server: %s", tm_strerror(rc));
        goto out_jobs;
    }
    a->v1.http = a->http;
    rc = tm_http_server_listen(a->http, addr);
    if (rc) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, tm_strerror(rc));
        tm_http_server_close(a->http, NULL, NULL);
        a->http = NULL;
        goto out_jobs;
    }
    return 0;
out_jobs:
    api_loopq_close(a->v1.loopq);
    a->v1.loopq = NULL;
    api_jobs_free(a->jobs);
    a->jobs = NULL;
    return rc;
}

void cli_api_address(const cli_api_t *a, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    if (tm_http_server_addr(a->http, &ss) == 0)
        tm_addr_format((const struct sockaddr *)&ss, buf, len);
    else
        snprintf(buf, len, "?");
}

static void cli__http_closed(void *arg)
{
    cli_api_t *a = arg;
    /* No handler runs any more; running jobs are cancelled and joined. The
     * loop queue closes first: a job waiting for the loop (which this
     * callback holds) returns at once instead of never. */
    api_loopq_close(a->v1.loopq);
    a->v1.loopq = NULL;
    api_jobs_free(a->jobs);
    a->jobs = NULL;
    a->stopped(a->arg);
}

void cli_api_stop(cli_api_t *a, void (*cb)(void *arg), void *arg)
{
    a->stopped = cb;
    a->arg = arg;
    tm_http_server_t *h = a->http;
    a->http = NULL;
    tm_http_server_close(h, cli__http_closed, a);
}
