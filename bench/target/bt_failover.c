/*
 * Time from a failover request to the first byte served, through the real
 * appliance: `tidemark serve` on the benchmark's data folder (journal/,
 * index/ and base/ are the appliance's own layout), a failover job asked
 * through the API at latest-processed, its job polled until the exports
 * are up, then MACHINE/DISK@failover opened and a 4 KiB read answered.
 * This is what an orchestrator and a booting machine wait for.
 */
#include "bench/target/bt.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"

#define BT_FO_START_MS 60000
#define BT_FO_JOB_MS 60000

typedef struct bt_http {
    CURL *c;
    char base[96];
    struct curl_slist *hdrs;
    char *body;
    size_t len;
} bt_http_t;

static size_t bt__http_sink(char *p, size_t sz, size_t n, void *arg)
{
    bt_http_t *h = arg;
    char *g = tm_realloc(h->body, h->len + sz * n + 1);
    if (!g)
        return 0;
    memcpy(g + h->len, p, sz * n);
    h->len += sz * n;
    g[h->len] = '\0';
    h->body = g;
    return sz * n;
}

/* GET or POST (body non-NULL) path; the answer's JSON, or NULL (err says why). */
static json_t *bt__http(bt_http_t *h, const char *path, const char *body, char *err, size_t errlen)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", h->base, path);
    tm_free(h->body);
    h->body = NULL;
    h->len = 0;
    curl_easy_setopt(h->c, CURLOPT_URL, url);
    curl_easy_setopt(h->c, CURLOPT_HTTPHEADER, h->hdrs);
    curl_easy_setopt(h->c, CURLOPT_WRITEFUNCTION, bt__http_sink);
    curl_easy_setopt(h->c, CURLOPT_WRITEDATA, h);
    if (body)
        curl_easy_setopt(h->c, CURLOPT_POSTFIELDS, body);
    else
        curl_easy_setopt(h->c, CURLOPT_HTTPGET, 1L);
    CURLcode cc = curl_easy_perform(h->c);
    long status = 0;
    curl_easy_getinfo(h->c, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK || status / 100 != 2) {
        snprintf(err, errlen, "%s %s: %s", body ? "POST" : "GET", path,
                 cc != CURLE_OK ? curl_easy_strerror(cc) : h->body ? h->body : "no body");
        return NULL;
    }
    json_t *j = json_loads(h->body ? h->body : "", 0, NULL);
    if (!j)
        snprintf(err, errlen, "%s: the answer is not JSON", path);
    return j;
}

/* "PREFIX ADDR" in text into out. */
static bool bt__addr_after(const char *text, const char *prefix, char *out, size_t len)
{
    const char *p = strstr(text, prefix);
    if (!p)
        return false;
    p += strlen(prefix);
    size_t n = strcspn(p, " \n");
    if (n == 0 || n >= len)
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

/* Start `tidemark serve` on dir; its pid, API and NBD addresses. */
static pid_t bt__serve(const char *dir, char *api, char *nbd, size_t len, char *err, size_t errlen)
{
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int nul = open("/dev/null", O_WRONLY);
        dup2(out[1], 1);
        if (nul >= 0)
            dup2(nul, 2);
        execl(TIDEMARK_BIN, "tidemark", "serve", "--data", dir, "--agents", "127.0.0.1:0", "--api", "127.0.0.1:0",
              "--nbd", "127.0.0.1:0", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    if (pid < 0) {
        close(out[0]);
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    char text[8192];
    size_t n = 0;
    uint64_t deadline = tm_mono_ns() + BT_FO_START_MS * 1000000ull;
    text[0] = '\0';
    while (!strstr(text, "serving") && tm_mono_ns() < deadline && n < sizeof text - 1) {
        struct pollfd pfd = {.fd = out[0], .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t r = read(out[0], text + n, sizeof text - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        text[n] = '\0';
    }
    close(out[0]); /* serve's later output goes nowhere: it ignores SIGPIPE */
    if (!strstr(text, "serving") || !bt__addr_after(text, "api on ", api, len) ||
        !bt__addr_after(text, "nbd on ", nbd, len)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        snprintf(err, errlen, "tidemark serve did not start on %s:\n%s", dir, text);
        return -1;
    }
    return pid;
}

int bt_failover_first_byte(const char *dir, uint64_t off, bt_fo_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char api[64], nbd[64];
    pid_t pid = bt__serve(dir, api, nbd, sizeof api, err, errlen);
    if (pid < 0)
        return -EIO;
    int rc = -EIO;
    bt_http_t h = {0};
    json_t *j = NULL;
    char token[128] = "", path[PATH_MAX];
    snprintf(path, sizeof path, "%s/api.token", dir);
    FILE *tf = fopen(path, "r");
    if (!tf || !fgets(token, sizeof token, tf)) {
        snprintf(err, errlen, "cannot read %s", path);
        if (tf)
            fclose(tf);
        goto out;
    }
    fclose(tf);
    token[strcspn(token, "\r\n")] = '\0';
    char auth[192];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    snprintf(h.base, sizeof h.base, "http://%s", api);
    h.c = curl_easy_init();
    h.hdrs = curl_slist_append(NULL, auth);
    h.hdrs = curl_slist_append(h.hdrs, "Content-Type: application/json");
    if (!h.c || !h.hdrs) {
        snprintf(err, errlen, "libcurl: out of memory");
        goto out;
    }
    /* the connection exists before the clock starts, as an orchestrator's would */
    if (!(j = bt__http(&h, "/v1/health", NULL, err, errlen)))
        goto out;
    json_decref(j);
    bj_drop_caches();

    uint64_t t0 = tm_mono_ns();
    j = bt__http(&h, "/v1/jobs",
                 "{\"action\":\"failover\",\"machine\":\"" BT_MACHINE "\",\"point\":\"latest-processed\"}", err,
                 errlen);
    if (!j)
        goto out;
    char job[96];
    snprintf(job, sizeof job, "/v1/jobs/%s", json_string_value(json_object_get(json_object_get(j, "job"), "id")));
    const char *state = json_string_value(json_object_get(json_object_get(j, "job"), "state"));
    bool done = state && strcmp(state, "running") != 0;
    uint64_t deadline = t0 + BT_FO_JOB_MS * 1000000ull;
    while (!done && tm_mono_ns() < deadline) {
        json_decref(j);
        if (!(j = bt__http(&h, job, NULL, err, errlen)))
            goto out;
        state = json_string_value(json_object_get(json_object_get(j, "job"), "state"));
        done = state && strcmp(state, "running") != 0;
    }
    if (!done || strcmp(state, "succeeded") != 0) {
        snprintf(err, errlen, "the failover job did not succeed: %s", h.body ? h.body : "?");
        goto out;
    }
    uint64_t t1 = tm_mono_ns();
    int port = atoi(strrchr(nbd, ':') + 1);
    bt_first_t first;
    if ((rc = bt_first_byte(port, BT_MACHINE "/" BT_DISK_NAME "@failover", off, &first, err, errlen)) != 0)
        goto out;
    uint64_t t2 = tm_mono_ns();
    out->job_s = (double)(t1 - t0) / 1e9;
    out->total_s = (double)(t2 - t0) / 1e9;
    out->open_read_s = first.total_s;
    rc = 0;
out:
    json_decref(j);
    tm_free(h.body);
    curl_slist_free_all(h.hdrs);
    if (h.c)
        curl_easy_cleanup(h.c);
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    return rc;
}
