/* The API client of the command line: address, token, requests (api_client.h). */
#include "cli/api_client.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/addr.h"
#include "base/err.h"
#include "base/mem.h"
#include "cli/cmd.h"

/* A token file is 64 hex digits and a newline; anything much larger is not
 * one, and is not read whole. */
#define CLI_API_TOKEN_MAX 1024

struct cli_api {
    CURL *curl;
    char addr[128];                /* as the user gave it, for messages */
    char base[160];                /* "http://127.0.0.1:7780" */
    char auth[CLI_API_TOKEN_MAX + 32]; /* "Authorization: Bearer TOKEN" */
    volatile sig_atomic_t *cancel;
    /* The body of the answer being received. */
    char *body;
    size_t body_len;
    size_t body_cap;
    bool body_too_big;
};

int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return **value ? 1 : -1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc || argv[*i + 1][0] == '\0')
        return -1;
    *value = argv[++*i];
    return 1;
}

int cli_api_flag(int argc, char **argv, int *i, cli_api_flags_t *fl, const char *cmd)
{
    static const char *const names[] = {"--api", "--config", "--data"};
    const char **slots[] = {&fl->api, &fl->config, &fl->data};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        int m = cli_opt_value(argc, argv, i, names[k], slots[k]);
        if (m < 0)
            fprintf(stderr, "tidemark: %s: %s needs a value\n", cmd, names[k]);
        if (m != 0)
            return m;
    }
    return 0;
}

/*
 * Read the token from path into api->auth. 0 or CLI_EXIT_FAIL (said why).
 * The file is made by the appliance, so every message says where it comes
 * from: the usual mistake is a client pointed at another data folder.
 */
static int cli__read_token(cli_api_t *api, const char *path)
{
    char buf[CLI_API_TOKEN_MAX + 1];
    int status = CLI_EXIT_FAIL;

    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT)
            fprintf(stderr,
                    "tidemark: the API token file %s does not exist; the appliance makes it at its first start "
                    "(start `tidemark serve`, or point --data or --config at its data folder)\n",
                    path);
        else
            fprintf(stderr,
                    "tidemark: cannot read the API token file %s: %s (the appliance makes it at its first start, "
                    "readable by its own user only)\n",
                    path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "tidemark: the API token file %s is not a regular file\n", path);
        goto out_close;
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof buf - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "tidemark: cannot read the API token file %s: %s\n", path, strerror(errno));
            goto out_close;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == sizeof buf) {
            fprintf(stderr, "tidemark: the API token file %s is too large to hold a token\n", path);
            goto out_close;
        }
    }
    while (len > 0 && isspace((unsigned char)buf[len - 1]))
        len--;
    buf[len] = '\0';
    /* Only visible ASCII: the token goes into a header line as it is. */
    bool ok = len > 0;
    for (size_t k = 0; k < len && ok; k++)
        ok = isgraph((unsigned char)buf[k]) != 0;
    if (!ok) {
        fprintf(stderr, "tidemark: the API token file %s does not hold a token (64 hex digits)\n", path);
        goto out_close;
    }
    snprintf(api->auth, sizeof api->auth, "Authorization: Bearer %s", buf);
    status = 0;

out_close:
    close(fd);
    return status;
}

/* Where the appliance is and where its data folder is: flags over the
 * config file over the defaults. 0 or an exit status (said why). */
static int cli__resolve(const cli_api_flags_t *fl, cli_api_t *api, char *token_path, size_t pathlen)
{
    char err[PATH_MAX + 256];
    cli_config_t cfg = {0};
    int status = CLI_EXIT_FAIL;

    int rc = cli_config_defaults(&cfg);
    if (rc != 0) {
        fprintf(stderr, "tidemark: %s\n", tm_strerror(rc));
        goto out_free_cfg;
    }
    if (fl->config) {
        rc = cli_config_load(&cfg, fl->config, err, sizeof err);
        if (rc != 0) {
            fprintf(stderr, "tidemark: config: %s\n", err);
            status = rc == -ENOMEM ? CLI_EXIT_FAIL : CLI_EXIT_USAGE;
            goto out_free_cfg;
        }
    }
    const char *addr = fl->api ? fl->api : cfg.api;
    const char *data = fl->data ? fl->data : cfg.data_dir;

    struct sockaddr_storage ss;
    if (tm_addr_parse(addr, &ss) != 0 || strlen(addr) >= sizeof api->addr) {
        fprintf(stderr, "tidemark: --api: '%s' is not an address (HOST:PORT or [V6]:PORT, numeric host)\n", addr);
        status = CLI_EXIT_USAGE;
        goto out_free_cfg;
    }
    snprintf(api->addr, sizeof api->addr, "%s", addr);
    /* The formatted form brackets an IPv6 host, as a URL needs, and turns
     * "localhost" into the address tm_addr_parse chose for it. */
    char hostport[128];
    tm_addr_format((const struct sockaddr *)&ss, hostport, sizeof hostport);
    snprintf(api->base, sizeof api->base, "http://%s", hostport);

    int n = snprintf(token_path, pathlen, "%s/%s", data, CLI_API_TOKEN_FILE);
    if (n < 0 || (size_t)n >= pathlen) {
        fprintf(stderr, "tidemark: the data folder path is too long: %s\n", data);
        status = CLI_EXIT_USAGE;
        goto out_free_cfg;
    }
    status = 0;

out_free_cfg:
    cli_config_free(&cfg);
    return status;
}

int cli_api_open(const cli_api_flags_t *fl, cli_api_t **out)
{
    char token_path[PATH_MAX];
    int status = CLI_EXIT_FAIL;

    cli_api_t *api = tm_calloc(1, sizeof *api);
    if (!api) {
        fprintf(stderr, "tidemark: %s\n", tm_strerror(-ENOMEM));
        return CLI_EXIT_FAIL;
    }
    status = cli__resolve(fl, api, token_path, sizeof token_path);
    if (status != 0)
        goto out_free_api;
    status = cli__read_token(api, token_path);
    if (status != 0)
        goto out_free_api;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "tidemark: cannot initialise libcurl\n");
        status = CLI_EXIT_FAIL;
        goto out_free_api;
    }
    api->curl = curl_easy_init();
    if (!api->curl) {
        fprintf(stderr, "tidemark: cannot initialise libcurl\n");
        status = CLI_EXIT_FAIL;
        goto out_global_cleanup;
    }
    *out = api;
    return 0;

out_global_cleanup:
    curl_global_cleanup();
out_free_api:
    tm_free(api);
    return status;
}

void cli_api_close(cli_api_t *api)
{
    if (!api)
        return;
    curl_easy_cleanup(api->curl);
    curl_global_cleanup();
    tm_free(api->body);
    /* The token is a credential: leave no copy in freed memory. */
    memset(api->auth, 0, sizeof api->auth);
    tm_free(api);
}

const char *cli_api_addr(const cli_api_t *api)
{
    return api->addr;
}

void cli_api_set_cancel(cli_api_t *api, volatile sig_atomic_t *flag)
{
    api->cancel = flag;
}

char *cli_api_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = tm_malloc(3 * n + 1);
    if (!out)
        return NULL;
    char *p = out;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    *p = '\0';
    return out;
}

static size_t cli__on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    cli_api_t *api = userdata;
    size_t n = size * nmemb;
    if (api->body_len + n > CLI_API_MAX_BODY) {
        api->body_too_big = true;
        return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
    }
    if (api->body_len + n + 1 > api->body_cap) {
        size_t cap = api->body_cap ? api->body_cap : 4096;
        while (cap < api->body_len + n + 1)
            cap *= 2;
        char *grown = tm_realloc(api->body, cap);
        if (!grown)
            return 0;
        api->body = grown;
        api->body_cap = cap;
    }
    memcpy(api->body + api->body_len, data, n);
    api->body_len += n;
    api->body[api->body_len] = '\0';
    return n;
}

/* curl calls this a few times a second during a transfer: the way out of a
 * request when the user presses Ctrl-C. */
static int cli__on_xfer(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    const cli_api_t *api = userdata;
    return api->cancel && *api->cancel ? 1 : 0;
}

void cli_api_print_error(const json_t *error, const char *what)
{
    const char *code = json_string_value(json_object_get(error, "code"));
    const char *message = json_string_value(json_object_get(error, "message"));
    fprintf(stderr, "tidemark: %s%s", what ? what : "", what ? ": " : "");
    /* One line, whatever the appliance put in its message. */
    for (const char *p = message ? message : "failed"; *p; p++)
        fputc((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p, stderr);
    fprintf(stderr, " (%s)\n", code ? code : "no code");
}

/* Say why a transfer failed, as one line. */
static void cli__say_transfer_failure(cli_api_t *api, CURLcode cc)
{
    long oserr = 0;
    curl_off_t connect_us = 0;
    curl_easy_getinfo(api->curl, CURLINFO_OS_ERRNO, &oserr);
    curl_easy_getinfo(api->curl, CURLINFO_CONNECT_TIME_T, &connect_us);
    const char *why = oserr ? strerror((int)oserr) : curl_easy_strerror(cc);

    if (api->body_too_big) {
        fprintf(stderr, "tidemark: the answer of the appliance at %s is over %u MiB; not read\n", api->addr,
                CLI_API_MAX_BODY >> 20);
    } else if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
               (cc == CURLE_OPERATION_TIMEDOUT && connect_us == 0)) {
        fprintf(stderr, "tidemark: cannot reach the appliance at %s: %s (is `tidemark serve` running?)\n",
                api->addr, why);
    } else if (cc == CURLE_OPERATION_TIMEDOUT) {
        fprintf(stderr, "tidemark: the appliance at %s did not answer within %ld s\n", api->addr,
                CLI_API_REQUEST_TIMEOUT_MS / 1000);
    } else {
        fprintf(stderr, "tidemark: the request to the appliance at %s failed: %s\n", api->addr, why);
    }
}

/* One request; method NULL: POST with body_json, GET without. */
static int cli__request(cli_api_t *api, const char *method, const char *path, const json_t *body_json, json_t **out)
{
    char url[sizeof api->base + 2048];
    struct curl_slist *headers = NULL, *grown;
    char *sent = NULL;
    json_t *answer = NULL;
    int status = CLI_EXIT_FAIL;

    *out = NULL;
    if (snprintf(url, sizeof url, "%s%s", api->base, path) >= (int)sizeof url) {
        fprintf(stderr, "tidemark: request path too long\n");
        return CLI_EXIT_FAIL;
    }
    api->body_len = 0;
    api->body_too_big = false;
    if (api->body)
        api->body[0] = '\0';

    static const char *const fixed[] = {"Accept: application/json", "Expect:"};
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++) {
        grown = curl_slist_append(headers, fixed[k]);
        if (!grown)
            goto out_nomem;
        headers = grown;
    }
    grown = curl_slist_append(headers, api->auth);
    if (!grown)
        goto out_nomem;
    headers = grown;

    CURL *c = api->curl;
    curl_easy_reset(c);
    if (body_json) {
        sent = json_dumps(body_json, JSON_COMPACT);
        if (!sent)
            goto out_nomem;
        grown = curl_slist_append(headers, "Content-Type: application/json");
        if (!grown)
            goto out_nomem;
        headers = grown;
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, sent);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(sent));
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    if (method)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    /* The appliance is always reached directly: a proxy in the environment
     * (http_proxy) must not capture loopback requests carrying the token. */
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CLI_API_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, CLI_API_REQUEST_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, cli__on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, api);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, cli__on_xfer);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, api);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);

    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_ABORTED_BY_CALLBACK) {
        status = CLI_EXIT_INTERRUPTED;
        goto out_free;
    }
    if (cc != CURLE_OK) {
        cli__say_transfer_failure(api, cc);
        goto out_free;
    }

    long http = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
    json_error_t jerr;
    answer = api->body_len ? json_loadb(api->body, api->body_len, 0, &jerr) : NULL;
    if (!json_is_object(answer)) {
        fprintf(stderr,
                "tidemark: the appliance at %s answered HTTP %ld %s (is %s the API address of a tidemark "
                "appliance?)\n",
                api->addr, http, api->body_len ? "with a body that is not a JSON object" : "with no body",
                api->addr);
        goto out_free;
    }
    if (http < 200 || http > 299) {
        const json_t *error = json_object_get(answer, "error");
        if (json_is_object(error)) {
            cli_api_print_error(error, NULL);
            const char *code = json_string_value(json_object_get(error, "code"));
            if (code && strcmp(code, "bad-selector") == 0)
                status = CLI_EXIT_USAGE;
        } else {
            fprintf(stderr, "tidemark: the appliance at %s answered HTTP %ld without an error object\n",
                    api->addr, http);
        }
        goto out_free;
    }
    *out = answer;
    answer = NULL;
    status = 0;
    goto out_free;

out_nomem:
    fprintf(stderr, "tidemark: %s\n", tm_strerror(-ENOMEM));
out_free:
    json_decref(answer);
    /* json_dumps allocates with jansson's allocator: free, not tm_free. */
    free(sent);
    curl_slist_free_all(headers);
    return status;
}

int cli_api_get(cli_api_t *api, const char *path, json_t **out)
{
    return cli__request(api, NULL, path, NULL, out);
}

int cli_api_post(cli_api_t *api, const char *path, const json_t *body, json_t **out)
{
    return cli__request(api, NULL, path, body, out);
}

int cli_api_send(cli_api_t *api, const char *method, const char *path, const json_t *body, json_t **out)
{
    return cli__request(api, method, path, body, out);
}

int cli_api_print_json(const json_t *v, FILE *out, bool compact)
{
    /* 15 significant digits: what the server meant (0.8), not the nearest
     * double spelled out (0.80000000000000004). */
    size_t flags = JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15) | (compact ? JSON_COMPACT : JSON_INDENT(2));
    char *text = json_dumps(v, flags);
    if (!text)
        return -ENOMEM;
    int rc = fprintf(out, "%s\n", text) < 0 ? -EIO : 0;
    free(text);
    if (rc == 0 && fflush(out) != 0)
        rc = -EIO;
    return rc;
}
