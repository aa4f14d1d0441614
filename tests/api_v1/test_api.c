/*
 * The orchestrator API against the real `tidemark serve`: a machine streams
 * through a real connection (the suite's blocking agent), then every v1
 * endpoint and every kind of bad request is tried with libcurl. The image
 * a materialize job writes is compared with the writes the agent sent,
 * applied by the test itself.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/token.h"
#include "tests/ingest/ita.h"
#include "wire/msg.h"

#define DISK_SIZE (4u << 20)

TestSuite(api_v1, .init = tc_setup, .fini = tc_teardown, .timeout = 120);

typedef struct resp {
    long status;
    char *body;
    size_t len;
    json_t *json;
} resp_t;

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    resp_t *r = arg;
    size_t k = size * n;
    r->body = realloc(r->body, r->len + k + 1);
    memcpy(r->body + r->len, p, k);
    r->len += k;
    r->body[r->len] = '\0';
    return k;
}

static unsigned g_port;
static char g_token[TM_API_TOKEN_HEX + 1];

/* One request; token NULL sends none. */
static void req(resp_t *r, const char *method, const char *path, const char *token, const char *ctype,
                const char *body)
{
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    char url[512], auth[128], ct[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", g_port, path);
    struct curl_slist *h = NULL;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    if (ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        h = curl_slist_append(h, ct);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r->body && r->body[0] == '{')
        r->json = json_loads(r->body, 0, NULL);
}

static void resp_free(resp_t *r)
{
    json_decref(r->json);
    free(r->body);
}

static const char *err_code(const resp_t *r)
{
    json_t *e = json_object_get(r->json, "error");
    return e ? json_string_value(json_object_get(e, "code")) : NULL;
}

/* Expect status and, for errors, the stable code. */
static void expect(const char *method, const char *path, const char *token, const char *ctype, const char *body,
                   long status, const char *code)
{
    resp_t r;
    req(&r, method, path, token, ctype, body);
    cr_assert_eq(r.status, status, "%s %s: status %ld, want %ld: %s", method, path, r.status, status,
                 r.body ? r.body : "");
    if (code) {
        cr_assert(err_code(&r) && strcmp(err_code(&r), code) == 0, "%s %s: %s", method, path, r.body);
        const char *msg = json_string_value(json_object_get(json_object_get(r.json, "error"), "message"));
        cr_assert(msg && msg[0], "%s %s: no message: %s", method, path, r.body);
    }
    resp_free(&r);
}

/* The writes of a frame applied to the model disk. */
static void apply(uint8_t *disk, const wire_buf_t *b)
{
    static wire_records_t m;
    static uint8_t scratch[WIRE_MAX_BATCH_DATA];
    char why[160];
    cr_assert_eq(wire_dec_records(b->data + WIRE_HDR_LEN, b->len - WIRE_HDR_LEN, &m, scratch, why, sizeof why), 0,
                 "%s", why);
    for (unsigned i = 0; i < m.count; i++) {
        const wire_entry_t *e = &m.entries[i];
        if (e->kind == WIRE_R_WRITE)
            memcpy(disk + e->offset, e->data, e->length);
        else if (e->kind == WIRE_R_ZERO || e->kind == WIRE_R_TRIM)
            memset(disk + e->offset, 0, e->length);
    }
}

static json_t *get_ok(const char *path)
{
    resp_t r;
    req(&r, "GET", path, g_token, NULL, NULL);
    cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body ? r.body : "");
    cr_assert_not_null(r.json, "GET %s: not JSON: %s", path, r.body);
    json_t *j = json_incref(r.json);
    resp_free(&r);
    return j;
}

Test(api_v1, endpoints_and_bad_requests_against_the_real_server)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *data = tc_path("data");
    ita_server_t srv;
    uint8_t secret[32], secret2[32];
    cr_assert_eq(mkdir(data, 0700), 0);
    ita_add_machine(data, "web1", secret);
    ita_add_machine(data, "idle1", secret2);
    ita_start(&srv, data, NULL);
    g_port = srv.api_port;
    char err[256];
    cr_assert_eq(tm_api_token_read(data, g_token, err, sizeof err), 0, "%s", err);

    /* a machine streams some batches */
    wire_disk_t disks[1] = {{"disk0", DISK_SIZE}};
    ita_agent_t a;
    wire_welcome_t w;
    uint64_t seq = ita_reconnect(&a, srv.port, "web1", secret, disks, 1, &w);
    uint8_t *model = calloc(1, DISK_SIZE);
    wire_buf_t b = {0};
    /* the disk is empty, so its initial copy is just SYNCED: from then on
     * the machine is protected and points are cut */
    wire_entry_t synced = {.kind = WIRE_R_SYNCED, .disk = 0};
    cr_assert_eq(wire_enc_records(&b, seq, &synced, 1, false), 0);
    ita_send(&a, &b);
    seq++;
    for (int i = 0; i < 20; i++) {
        wire_buf_reset(&b);
        ita_batch(&b, seq, 16, DISK_SIZE, 1000 + (uint64_t)i, i % 2);
        apply(model, &b);
        ita_send(&a, &b);
        seq += 16;
    }
    ita_wait_ack(&a, seq - 1);

    /* health: no token needed, names the appliance */
    resp_t r;
    req(&r, "GET", "/v1/health", NULL, NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "status")), "ok");
    const char *app = json_string_value(json_object_get(r.json, "appliance"));
    cr_assert(app && strlen(app) == 16, "%s", r.body);
    resp_free(&r);

    /* auth */
    expect("GET", "/v1/machines", NULL, NULL, NULL, 401, "unauthorized");
    expect("GET", "/v1/machines", "0000", NULL, NULL, 401, "unauthorized");
    expect("GET", "/metrics", NULL, NULL, NULL, 401, "unauthorized");

    /* machines: the streaming one and the registered one */
    json_t *ms = get_ok("/v1/machines");
    json_t *list = json_object_get(ms, "machines");
    cr_assert_eq(json_array_size(list), 2, "%s", json_dumps(ms, 0));
    json_t *idle = json_array_get(list, 0), *web = json_array_get(list, 1);
    cr_assert_str_eq(json_string_value(json_object_get(idle, "name")), "idle1");
    cr_assert_str_eq(json_string_value(json_object_get(idle, "state")), "registered");
    cr_assert_str_eq(json_string_value(json_object_get(web, "name")), "web1");
    cr_assert(json_is_true(json_object_get(web, "connected")));
    cr_assert_str_eq(json_string_value(json_object_get(web, "state")), "protected");
    cr_assert_eq(json_integer_value(json_object_get(web, "received_seq")), (json_int_t)(seq - 1));
    json_decref(ms);

    /* latest: processes everything and cuts the point at the end */
    json_t *lp = get_ok("/v1/machines/web1/points/latest");
    json_t *pt = json_object_get(lp, "point");
    cr_assert_eq(json_integer_value(json_object_get(pt, "seq")), (json_int_t)(seq - 1));
    cr_assert_str_eq(json_string_value(json_object_get(lp, "selector")), "latest");
    json_decref(lp);
    json_t *lpp = get_ok("/v1/machines/web1/points/latest-processed");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(lpp, "point"), "seq")), (json_int_t)(seq - 1));
    json_decref(lpp);

    /* the list, newest first, with filters */
    json_t *pl = get_ok("/v1/machines/web1/points?limit=2");
    json_t *pts = json_object_get(pl, "points");
    cr_assert_leq(json_array_size(pts), 2);
    cr_assert_geq(json_array_size(pts), 1);
    const char *id = json_string_value(json_object_get(json_array_get(pts, 0), "id"));
    char path[256];
    snprintf(path, sizeof path, "/v1/machines/web1/points/%s", id);
    json_decref(get_ok(path));
    json_decref(pl);
    json_decref(get_ok("/v1/machines/web1/points?kind=crash&since=2000-01-01T00%3A00%3A00Z"));
    json_decref(get_ok("/v1/machines/idle1/points"));

    /* @TIME: now is after every write; %-encoded and plain */
    char now[64], sel[128];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%S", gmtime(&ts.tv_sec));
    snprintf(sel, sizeof sel, "/v1/machines/web1/points/%%40%s.%09ldZ", now, ts.tv_nsec);
    json_t *at = get_ok(sel);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(at, "point"), "kind")), "custom");
    json_decref(at);

    /* bad selectors, unknown machines, no point */
    expect("GET", "/v1/machines/web1/points/newest", g_token, NULL, NULL, 400, "bad-selector");
    expect("GET", "/v1/machines/web1/points/@yesterday", g_token, NULL, NULL, 400, "bad-selector");
    expect("GET", "/v1/machines/web1/points/999999", g_token, NULL, NULL, 404, "no-point");
    expect("GET", "/v1/machines/web1/points/@1999-01-01T00:00:00Z", g_token, NULL, NULL, 404, "no-point");
    expect("GET", "/v1/machines/idle1/points/latest", g_token, NULL, NULL, 404, "no-point");
    expect("GET", "/v1/machines/web1/points/latest-app", g_token, NULL, NULL, 404, "no-point");
    expect("GET", "/v1/machines/nosuch/points", g_token, NULL, NULL, 404, "unknown-machine");
    expect("GET", "/v1/machines/nosuch/points/latest", g_token, NULL, NULL, 404, "unknown-machine");
    expect("GET", "/v1/machines/web1/points?kind=weird", g_token, NULL, NULL, 400, "bad-request");
    expect("GET", "/v1/machines/web1/points?limit=0", g_token, NULL, NULL, 400, "bad-request");
    expect("GET", "/v1/machines/web1/points?since=monday", g_token, NULL, NULL, 400, "bad-request");

    /* paths and methods */
    expect("GET", "/v1/nothing", g_token, NULL, NULL, 404, "not-found");
    expect("DELETE", "/v1/machines", g_token, NULL, NULL, 405, "method-not-allowed");
    expect("PUT", "/v1/jobs", g_token, "application/json", "{}", 405, "method-not-allowed");

    /* tags: the agent is connected, so the request reaches it */
    req(&r, "POST", "/v1/machines/web1/tags", g_token, "application/json", "{\"name\":\"before-upgrade\"}");
    cr_assert_eq(r.status, 202, "%s", r.body);
    resp_free(&r);
    bool got_tag = false;
    while (!got_tag && ita_recv(&a))
        got_tag = a.type == WIRE_T_TAG_REQUEST;
    cr_assert(got_tag, "the agent never got the TAG_REQUEST");
    expect("POST", "/v1/machines/web1/tags", g_token, "application/json", "{\"name\":\"-bad\"}", 400, "bad-request");
    expect("POST", "/v1/machines/idle1/tags", g_token, "application/json", "{}", 409, "conflict");
    expect("POST", "/v1/machines/web1/tags", g_token, "text/plain", "hello", 415, "unsupported-media-type");
    expect("POST", "/v1/machines/web1/tags", g_token, "application/json", "{\"name\":", 400, "bad-request");

    /* jobs: a materialize at latest, compared with the model */
    char out[512], body[1024];
    snprintf(out, sizeof out, "%s/out", tc_dir);
    cr_assert_eq(mkdir(out, 0755), 0);
    snprintf(body, sizeof body, "{\"action\":\"materialize\",\"machine\":\"web1\",\"point\":\"latest\",\"out\":\"%s\"}",
             out);
    req(&r, "POST", "/v1/jobs", g_token, "application/json", body);
    cr_assert_eq(r.status, 201, "%s", r.body);
    const char *jid = json_string_value(json_object_get(json_object_get(r.json, "job"), "id"));
    cr_assert_not_null(jid);
    char jid_s[24];
    snprintf(jid_s, sizeof jid_s, "%s", jid);
    snprintf(path, sizeof path, "/v1/jobs/%s", jid);
    resp_free(&r);
    const char *state = "running";
    json_t *job = NULL;
    for (int i = 0; i < 600 && strcmp(state, "running") == 0; i++) {
        json_decref(job);
        job = get_ok(path);
        state = json_string_value(json_object_get(json_object_get(job, "job"), "state"));
        if (strcmp(state, "running") == 0)
            usleep(50 * 1000); /* polling a job, as a client does */
    }
    cr_assert_str_eq(state, "succeeded", "%s", json_dumps(job, 0));
    json_decref(job);
    char img[600];
    snprintf(img, sizeof img, "%s/disk0.raw", out);
    FILE *f = fopen(img, "rb");
    cr_assert_not_null(f, "%s missing", img);
    uint8_t *got = malloc(DISK_SIZE);
    cr_assert_eq(fread(got, 1, DISK_SIZE, f), DISK_SIZE);
    cr_assert_eq(fgetc(f), EOF, "the image is longer than the disk");
    fclose(f);
    cr_assert(memcmp(got, model, DISK_SIZE) == 0, "the materialized disk differs from what the agent wrote");
    free(got);
    json_t *jl = get_ok("/v1/jobs");
    cr_assert_eq(json_array_size(json_object_get(jl, "jobs")), 1);
    json_decref(jl);

    expect("GET", "/v1/jobs/12345", g_token, NULL, NULL, 404, "unknown-job");
    expect("POST", "/v1/jobs", g_token, "application/json", "{\"action\":\"explode\"}", 400, "bad-request");
    expect("POST", "/v1/jobs", g_token, "application/json", "[1,2]", 400, "bad-request");
    expect("POST", "/v1/jobs", g_token, "application/json",
           "{\"action\":\"materialize\",\"machine\":\"web1\",\"point\":\"latest\",\"out\":\"relative/dir\"}", 400,
           "bad-request");
    expect("POST", "/v1/jobs", g_token, "application/json",
           "{\"action\":\"materialize\",\"machine\":\"web1\",\"point\":\"latest\"}", 400, "bad-request");
    expect("POST", "/v1/jobs", g_token, "application/json",
           "{\"action\":\"materialize\",\"machine\":\"nosuch\",\"point\":\"latest\",\"out\":\"/\"}", 404,
           "unknown-machine");
    /* an oversize body */
    size_t big = (1u << 20) + 10;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    huge[big] = '\0';
    expect("POST", "/v1/jobs", g_token, "application/json", huge, 413, "too-large");
    free(huge);

    /* metrics */
    req(&r, "GET", "/metrics", g_token, NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "tidemark_processed_extents_total ") && strstr(r.body, "tidemark_journal_fsyncs_total ") &&
                  strstr(r.body, "tidemark_machine_rpo_seconds{machine=\"web1\"}") &&
                  strstr(r.body, "tidemark_processing_lag_bytes "),
              "%s", r.body);
    resp_free(&r);

    /* `tidemark export`: the URIs of the disks at a point, read with qemu-img */
    char api_addr[64];
    snprintf(api_addr, sizeof api_addr, "127.0.0.1:%u", srv.api_port);
    tc_child_t ex;
    int code = tc_run(&ex, (const char *[]){"export", "web1", "--point", "latest", "--api", api_addr, "--data", data,
                                            NULL});
    cr_assert_eq(code, 0, "export: %s", ex.err);
    char uri[256];
    cr_assert_eq(sscanf(ex.out, "%255s", uri), 1, "%s", ex.out);
    cr_assert(strncmp(uri, "nbd://127.0.0.1:", 16) == 0 && strstr(uri, "/web1/disk0@"), "%s", uri);
    tc_child_free(&ex);
    char raw[600];
    snprintf(raw, sizeof raw, "%s/exported.raw", tc_dir);
    {
        /* qemu-utils is one of the suite's packages (./dev) */
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            execlp("qemu-img", "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, raw, (char *)NULL);
            _exit(127);
        }
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "qemu-img convert %s failed", uri);
        FILE *rf = fopen(raw, "rb");
        cr_assert_not_null(rf);
        uint8_t *exported = malloc(DISK_SIZE);
        cr_assert_eq(fread(exported, 1, DISK_SIZE, rf), DISK_SIZE);
        fclose(rf);
        cr_assert(memcmp(exported, model, DISK_SIZE) == 0, "the exported disk differs from what the agent wrote");
        free(exported);
    }

    /* test failover: a writable web1/disk0@test over the point, through a job */
    req(&r, "POST", "/v1/jobs", g_token, "application/json",
        "{\"action\":\"test-failover\",\"machine\":\"web1\",\"point\":\"latest-processed\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    snprintf(path, sizeof path, "/v1/jobs/%s", json_string_value(json_object_get(json_object_get(r.json, "job"), "id")));
    resp_free(&r);
    json_t *tj = NULL;
    state = "running";
    for (int i = 0; i < 600 && strcmp(state, "running") == 0; i++) {
        json_decref(tj);
        tj = get_ok(path);
        state = json_string_value(json_object_get(json_object_get(tj, "job"), "state"));
        if (strcmp(state, "running") == 0)
            usleep(20 * 1000);
    }
    cr_assert_str_eq(state, "succeeded", "%s", json_dumps(tj, 0));
    json_t *tex = json_array_get(json_object_get(json_object_get(tj, "job"), "exports"), 0);
    const char *turi = json_string_value(json_object_get(tex, "uri"));
    cr_assert(turi && strstr(turi, "/web1/disk0@test"), "%s", json_dumps(tj, 0));
    char test_uri[256];
    snprintf(test_uri, sizeof test_uri, "%s", turi);
    json_decref(tj);
    expect("POST", "/v1/jobs", g_token, "application/json",
           "{\"action\":\"test-failover\",\"machine\":\"web1\",\"point\":\"latest\"}", 409, "conflict");
    {
        /* write through it, read it back; the point itself does not change */
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            int nul = open("/dev/null", O_WRONLY);
            if (nul >= 0)
                dup2(nul, 1);
            execlp("qemu-io", "qemu-io", "-f", "raw", test_uri, "-c", "write -P 0x5a 0 64k", "-c", "flush", "-c",
                   "read -P 0x5a 0 64k", (char *)NULL);
            _exit(127);
        }
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "qemu-io on %s failed", test_uri);
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            execlp("qemu-img", "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, raw, (char *)NULL);
            _exit(127);
        }
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        FILE *rf = fopen(raw, "rb");
        cr_assert_not_null(rf);
        uint8_t *again = malloc(DISK_SIZE);
        cr_assert_eq(fread(again, 1, DISK_SIZE, rf), DISK_SIZE);
        fclose(rf);
        cr_assert(memcmp(again, model, DISK_SIZE) == 0, "a test failover's write changed the point");
        free(again);
    }
    req(&r, "POST", "/v1/jobs", g_token, "application/json", "{\"action\":\"test-cleanup\",\"machine\":\"web1\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "job"), "state")), "succeeded", "%s",
                     r.body);
    resp_free(&r);
    expect("POST", "/v1/jobs", g_token, "application/json", "{\"action\":\"test-cleanup\",\"machine\":\"web1\"}",
           409, "conflict");
    /* failover jobs: bad requests get a clear 4xx and nothing starts */
    static const struct {
        const char *body;
        int status;
        const char *code;
    } bad_fo[] = {
        {"{\"action\":\"failover\",\"point\":\"latest\"}", 400, "bad-request"},
        {"{\"action\":\"failover\",\"machine\":\"web1\"}", 400, "bad-request"},
        {"{\"action\":\"failover\",\"machine\":\"web1\",\"machines\":[\"web1\"],\"point\":\"latest\"}", 400,
         "bad-request"},
        {"{\"action\":\"failover\",\"machines\":[],\"point\":\"latest\"}", 400, "bad-request"},
        {"{\"action\":\"failover\",\"machines\":[\"web1\",7],\"point\":\"latest\"}", 400, "bad-request"},
        {"{\"action\":\"failover\",\"machines\":[\"web1\",\"web1\"],\"point\":\"latest\"}", 400, "bad-request"},
        {"{\"action\":\"failover\",\"machine\":\"nosuch\",\"point\":\"latest\"}", 404, "unknown-machine"},
        {"{\"action\":\"failover\",\"machine\":\"web1\",\"point\":\"latest\",\"options\":{\"reboot\":true}}", 400,
         "bad-request"},
        {"{\"action\":\"failover\",\"machine\":\"web1\",\"point\":\"latest\",\"options\":{\"out\":\"rel\"}}", 400,
         "bad-request"},
        {"{\"action\":\"failover\",\"machine\":\"web1\",\"point\":\"latest\",\"options\":[]}", 400, "bad-request"},
        {"{\"action\":\"planned-failover\",\"machine\":\"web1\",\"point\":\"latest\"}", 400, "bad-request"},
        {"{\"action\":\"commit\",\"machine\":\"web1\",\"point\":\"1\"}", 400, "bad-request"},
        {"{\"action\":\"change-point\",\"machine\":\"web1\"}", 400, "bad-request"},
    };
    for (size_t i = 0; i < sizeof bad_fo / sizeof bad_fo[0]; i++)
        expect("POST", "/v1/jobs", g_token, "application/json", bad_fo[i].body, bad_fo[i].status, bad_fo[i].code);
    /* a well-formed commit of a machine that is not failed over: the job
     * says why, per machine */
    req(&r, "POST", "/v1/jobs", g_token, "application/json", "{\"action\":\"commit\",\"machine\":\"web1\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    snprintf(path, sizeof path, "/v1/jobs/%s", json_string_value(json_object_get(json_object_get(r.json, "job"), "id")));
    char cancel_path[320];
    snprintf(cancel_path, sizeof cancel_path, "%s/cancel", path);
    resp_free(&r);
    tj = NULL;
    state = "running";
    for (int i = 0; i < 600 && strcmp(state, "running") == 0; i++) {
        json_decref(tj);
        tj = get_ok(path);
        state = json_string_value(json_object_get(json_object_get(tj, "job"), "state"));
        if (strcmp(state, "running") == 0)
            usleep(20 * 1000);
    }
    cr_assert_str_eq(state, "failed", "%s", json_dumps(tj, 0));
    const json_t *cm = json_array_get(json_object_get(json_object_get(tj, "job"), "machines"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(cm, "error"), "code")), "conflict", "%s",
                     json_dumps(tj, 0));
    json_decref(tj);
    expect("POST", cancel_path, g_token, "application/json", "{}", 409, "not-cancellable");
    expect("POST", "/v1/jobs/424242/cancel", g_token, "application/json", "{}", 404, "unknown-job");
    /* `tidemark jobs`: the table, and one job in full */
    tc_child_t jc;
    code = tc_run(&jc, (const char *[]){"jobs", "--api", api_addr, "--data", data, NULL});
    cr_assert_eq(code, 0, "jobs: %s", jc.err);
    cr_assert(strstr(jc.out, "test-failover") && strstr(jc.out, "test-cleanup") && strstr(jc.out, "materialize") &&
                  strstr(jc.out, "succeeded"),
              "%s", jc.out);
    tc_child_free(&jc);
    code = tc_run(&jc, (const char *[]){"jobs", jid_s, "--api", api_addr, "--data", data, NULL});
    cr_assert_eq(code, 0, "jobs %s: %s", jid_s, jc.err);
    cr_assert(strstr(jc.out, "materialize of web1, succeeded") && strstr(jc.out, "  file      "), "%s", jc.out);
    tc_child_free(&jc);
    code = tc_run(&jc, (const char *[]){"jobs", "999", "--api", api_addr, "--data", data, NULL});
    cr_assert_eq(code, 1, "%s", jc.err);
    cr_assert(strstr(jc.err, "(unknown-job)"), "%s", jc.err);
    tc_child_free(&jc);

    /* after all of it, the server still answers, and a tag for a machine
     * whose agent left is a conflict */
    ita_close(&a);
    json_decref(get_ok("/v1/health"));
    ita_stop(&srv);
    tc_child_free(&srv.c);
    wire_buf_free(&b);
    free(model);
    curl_global_cleanup();
}
