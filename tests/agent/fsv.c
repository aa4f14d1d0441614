#include "tests/agent/fsv.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"

struct fsv {
    int lfd;
    int wake[2];          /* the test writes a byte to stop the thread */
    unsigned port;
    pthread_t thread;
    pthread_mutex_t mu;   /* everything below, and writes to cfd */
    pthread_cond_t cv;
    int cfd;              /* the agent's connection, -1 none */
    bool streaming;
    bool stop;
    fsv_rec_t *recs;
    size_t n, cap;
    wire_records_t *batch;
    uint8_t *scratch;
    uint16_t ndisks;      /* the HELLO's, for the WELCOME */
    char fail[256];       /* the first thing the agent got wrong; asserted on the test's thread */
    fsv_prepared_t *prep; /* PREPARED frames, in the order they came */
    size_t nprep, cap_prep;
    unsigned sessions;    /* sessions welcomed */
};

/* Criterion's asserts work on the test's thread only: here a failure is
 * kept, the connection dropped, and fsv_records/fsv_stop assert on it. */
#define FSV_CHECK(s, cond, ...)                                                  \
    do {                                                                         \
        if (!(cond)) {                                                           \
            pthread_mutex_lock(&(s)->mu);                                        \
            if (!(s)->fail[0])                                                   \
                snprintf((s)->fail, sizeof (s)->fail, __VA_ARGS__);              \
            pthread_mutex_unlock(&(s)->mu);                                      \
            return false;                                                        \
        }                                                                        \
    } while (0)

/* Write all of b to the connection (under the lock); false when it is gone. */
static bool fsv__send_locked(fsv_t *s, const wire_buf_t *b)
{
    size_t off = 0;
    while (off < b->len && s->cfd >= 0) {
        ssize_t w = send(s->cfd, b->data + off, b->len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        off += (size_t)w;
    }
    return off == b->len;
}

static void fsv__drop(fsv_t *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->cfd >= 0)
        close(s->cfd);
    s->cfd = -1;
    s->streaming = false;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* One frame from the agent; false ends the connection. */
static bool fsv__frame(fsv_t *s, const wire_decoder_t *d)
{
    char reason[200];
    wire_buf_t b = {0};
    bool ok = true;
    switch (d->hdr.type) {
    case WIRE_T_HELLO: {
        wire_hello_t *h = tm_malloc(sizeof *h);
        FSV_CHECK(s, h, "out of memory");
        int rc = wire_dec_hello(d->body, d->hdr.body_len, h, reason, sizeof reason);
        s->ndisks = h->ndisks;
        tm_free(h);
        FSV_CHECK(s, rc == 0, "bad HELLO: %s", reason);
        wire_challenge_t ch;
        memset(&ch, 0, sizeof ch);
        snprintf(ch.server_id, sizeof ch.server_id, "fake-appliance");
        FSV_CHECK(s, wire_enc_challenge(&b, &ch) == 0, "encode");
        break;
    }
    case WIRE_T_AUTH: {
        /* Any MAC will do: this tests the agent, not authentication. */
        wire_welcome_t w = {.window_bytes = 16u << 20, .max_batch_data = WIRE_MAX_BATCH_DATA,
                            .ndisks = s->ndisks};
        pthread_mutex_lock(&s->mu);
        w.next_seq = s->n + 1;
        pthread_mutex_unlock(&s->mu);
        for (unsigned i = 0; i < WIRE_MAX_DISKS; i++)
            w.disk_state[i] = WIRE_DISK_SYNCED;
        FSV_CHECK(s, wire_enc_welcome(&b, &w) == 0, "encode");
        pthread_mutex_lock(&s->mu);
        ok = fsv__send_locked(s, &b);
        s->streaming = ok;
        s->sessions += ok;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        wire_buf_free(&b);
        return ok;
    }
    case WIRE_T_RECORDS: {
        wire_records_t *r = s->batch;
        int rc = wire_dec_records(d->body, d->hdr.body_len, r, s->scratch, reason, sizeof reason);
        FSV_CHECK(s, rc == 0, "bad RECORDS: %s", reason);
        pthread_mutex_lock(&s->mu);
        size_t have = s->n;
        pthread_mutex_unlock(&s->mu);
        FSV_CHECK(s, r->first_seq == have + 1, "a batch from sequence %llu after %zu records",
                  (unsigned long long)r->first_seq, have);
        pthread_mutex_lock(&s->mu);
        for (unsigned i = 0; i < r->count; i++) {
            const wire_entry_t *e = &r->entries[i];
            if (s->n == s->cap) {
                size_t cap = s->cap ? 2 * s->cap : 256;
                fsv_rec_t *g = tm_realloc(s->recs, cap * sizeof *g);
                if (!g) {
                    pthread_mutex_unlock(&s->mu);
                    FSV_CHECK(s, false, "out of memory");
                }
                s->recs = g;
                s->cap = cap;
            }
            fsv_rec_t *k = &s->recs[s->n++];
            memset(k, 0, sizeof *k);
            k->seq = r->first_seq + i;
            k->kind = e->kind;
            k->tag_kind = e->tag_kind;
            k->disk = e->disk;
            k->offset = e->offset;
            k->length = e->length;
            k->id = e->id;
            if (e->kind == WIRE_R_TAG) {
                memcpy(k->name, e->data, e->length < WIRE_MAX_NAME ? e->length : WIRE_MAX_NAME);
            } else if (e->kind == WIRE_R_WRITE && e->length) {
                k->fill = e->data[0];
                k->uniform = true;
                for (uint32_t j = 1; j < e->length && k->uniform; j++)
                    k->uniform = e->data[j] == k->fill;
            }
        }
        ok = wire_enc_ack(&b, r->first_seq + r->count - 1) == 0 && fsv__send_locked(s, &b);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        wire_buf_free(&b);
        return ok;
    }
    case WIRE_T_PREPARED: {
        wire_prepared_t p;
        int rc = wire_dec_prepared(d->body, d->hdr.body_len, &p, reason, sizeof reason);
        FSV_CHECK(s, rc == 0, "bad PREPARED: %s", reason);
        pthread_mutex_lock(&s->mu);
        if (s->nprep == s->cap_prep) {
            size_t cap = s->cap_prep ? 2 * s->cap_prep : 16;
            fsv_prepared_t *g = tm_realloc(s->prep, cap * sizeof *g);
            if (!g) {
                pthread_mutex_unlock(&s->mu);
                FSV_CHECK(s, false, "out of memory");
            }
            s->prep = g;
            s->cap_prep = cap;
        }
        fsv_prepared_t *k = &s->prep[s->nprep++];
        k->round = p.round;
        k->held = p.status == WIRE_PREPARED_HELD;
        k->seq = p.seq;
        k->records = s->n;
        snprintf(k->reason, sizeof k->reason, "%s", p.reason);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return true;
    }
    case WIRE_T_RESYNC_REQUEST:
        /* Never answered: the agent's resync stays open (what a test of
         * a round during a resync needs). */
        return true;
    default:
        return false; /* ERROR or anything else: the agent reconnects */
    }
    pthread_mutex_lock(&s->mu);
    ok = fsv__send_locked(s, &b);
    pthread_mutex_unlock(&s->mu);
    wire_buf_free(&b);
    return ok;
}

static void *fsv__run(void *arg)
{
    fsv_t *s = arg;
    wire_decoder_t dec;
    uint8_t *buf = tm_malloc(1u << 16);
    if (!buf)
        return NULL;
    wire_decoder_init(&dec);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int cfd = s->cfd;
        bool stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        struct pollfd p[2] = {{.fd = s->wake[0], .events = POLLIN},
                              {.fd = cfd >= 0 ? cfd : s->lfd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0)
            continue;
        if (p[0].revents)
            continue; /* the stop flag is read at the top */
        if (!p[1].revents)
            continue;
        if (cfd < 0) {
            int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0)
                continue;
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            wire_decoder_free(&dec);
            wire_decoder_init(&dec);
            pthread_mutex_lock(&s->mu);
            s->cfd = fd;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        ssize_t r = recv(cfd, buf, 1u << 16, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fsv__drop(s);
            continue;
        }
        size_t off = 0;
        bool ok = true;
        while (ok && off < (size_t)r) {
            size_t used = 0;
            wire_status_t st = wire_decode(&dec, buf + off, (size_t)r - off, &used);
            off += used;
            if (st == WIRE_BAD)
                ok = false;
            else if (st == WIRE_FRAME)
                ok = fsv__frame(s, &dec);
            else if (used == 0)
                break;
        }
        if (!ok)
            fsv__drop(s);
    }
    wire_decoder_free(&dec);
    tm_free(buf);
    return NULL;
}

fsv_t *fsv_start(void)
{
    fsv_t *s = tm_calloc(1, sizeof *s);
    cr_assert_not_null(s);
    s->cfd = -1;
    s->batch = tm_malloc(sizeof *s->batch);
    s->scratch = tm_malloc(WIRE_MAX_BATCH_DATA);
    cr_assert(s->batch && s->scratch);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    cr_assert_eq(pipe2(s->wake, O_CLOEXEC), 0);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(s->lfd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(s->lfd, 4), 0);
    socklen_t sl = sizeof sa;
    cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
    s->port = ntohs(sa.sin_port);
    cr_assert_eq(pthread_create(&s->thread, NULL, fsv__run, s), 0);
    return s;
}

unsigned fsv_port(const fsv_t *s)
{
    return s->port;
}

const char *fsv_addr(const fsv_t *s)
{
    static char buf[32];
    snprintf(buf, sizeof buf, "127.0.0.1:%u", s->port);
    return buf;
}

/* The absolute deadline timeout_ms from now, for pthread_cond_timedwait. */
static struct timespec fsv__deadline(int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

bool fsv_wait_connected(fsv_t *s, int timeout_ms)
{
    struct timespec dl = fsv__deadline(timeout_ms);
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    while (!s->streaming && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&s->cv, &s->mu, &dl);
    bool ok = s->streaming;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

void fsv_tag(fsv_t *s, uint8_t kind, uint64_t id, const char *name)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_tag_request(&b, kind, id, name), 0);
    pthread_mutex_lock(&s->mu);
    bool ok = s->streaming && fsv__send_locked(s, &b);
    pthread_mutex_unlock(&s->mu);
    wire_buf_free(&b);
    cr_assert(ok, "no agent is streaming to send tag request '%s' to", name);
}

/* Send b on the live connection; false when there is none. */
static bool fsv__send(fsv_t *s, const wire_buf_t *b)
{
    pthread_mutex_lock(&s->mu);
    bool ok = s->streaming && fsv__send_locked(s, b);
    pthread_mutex_unlock(&s->mu);
    return ok;
}

void fsv_group_prepare(fsv_t *s, uint64_t round, uint8_t kind, uint32_t hold_ms, const char *name)
{
    wire_buf_t b = {0};
    wire_group_prepare_t m = {.round = round, .kind = kind, .hold_ms = hold_ms};
    snprintf(m.name, sizeof m.name, "%s", name);
    cr_assert_eq(wire_enc_group_prepare(&b, &m), 0);
    bool ok = fsv__send(s, &b);
    wire_buf_free(&b);
    cr_assert(ok, "no agent is streaming to send GROUP_PREPARE %llu to", (unsigned long long)round);
}

void fsv_group_decide(fsv_t *s, uint64_t round, bool commit)
{
    wire_buf_t b = {0};
    cr_assert_eq(commit ? wire_enc_group_commit(&b, round) : wire_enc_group_abort(&b, round), 0);
    bool ok = fsv__send(s, &b);
    wire_buf_free(&b);
    cr_assert(ok, "no agent is streaming to send the decision of round %llu to", (unsigned long long)round);
}

void fsv_stop_agent(fsv_t *s, uint64_t id, const char *name)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_stop(&b, id, name, "test"), 0);
    bool ok = fsv__send(s, &b);
    wire_buf_free(&b);
    cr_assert(ok, "no agent is streaming to send STOP to");
}

void fsv_resume_agent(fsv_t *s)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_resume(&b, "test"), 0);
    bool ok = fsv__send(s, &b);
    wire_buf_free(&b);
    cr_assert(ok, "no agent is streaming to send RESUME to");
}

bool fsv_wait_prepared(fsv_t *s, uint64_t round, int timeout_ms, fsv_prepared_t *out)
{
    struct timespec dl = fsv__deadline(timeout_ms);
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    const fsv_prepared_t *hit = NULL;
    for (;;) {
        for (size_t i = 0; i < s->nprep && !hit; i++)
            if (s->prep[i].round == round)
                hit = &s->prep[i];
        if (hit || rc == ETIMEDOUT)
            break;
        rc = pthread_cond_timedwait(&s->cv, &s->mu, &dl);
    }
    if (hit && out)
        *out = *hit;
    pthread_mutex_unlock(&s->mu);
    return hit != NULL;
}

unsigned fsv_prepared_count(fsv_t *s, uint64_t round)
{
    unsigned n = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nprep; i++)
        n += s->prep[i].round == round;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void fsv_drop_agent(fsv_t *s)
{
    /* shutdown, not close: the serving thread notices and closes it */
    pthread_mutex_lock(&s->mu);
    if (s->cfd >= 0)
        shutdown(s->cfd, SHUT_RDWR);
    pthread_mutex_unlock(&s->mu);
}

bool fsv_wait_sessions(fsv_t *s, unsigned n, int timeout_ms)
{
    struct timespec dl = fsv__deadline(timeout_ms);
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    while (!(s->streaming && s->sessions >= n) && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&s->cv, &s->mu, &dl);
    bool ok = s->streaming && s->sessions >= n;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

unsigned fsv_sessions(fsv_t *s)
{
    pthread_mutex_lock(&s->mu);
    unsigned n = s->sessions;
    pthread_mutex_unlock(&s->mu);
    return n;
}

bool fsv_wait(fsv_t *s, bool (*pred)(const fsv_rec_t *r, size_t n, void *arg), void *arg, int timeout_ms)
{
    struct timespec dl = fsv__deadline(timeout_ms);
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    bool ok;
    while (!(ok = pred(s->recs, s->n, arg)) && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&s->cv, &s->mu, &dl);
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static bool fsv__at_least(const fsv_rec_t *r, size_t n, void *arg)
{
    (void)r;
    return n >= *(size_t *)arg;
}

bool fsv_wait_count(fsv_t *s, size_t n, int timeout_ms)
{
    return fsv_wait(s, fsv__at_least, &n, timeout_ms);
}

fsv_rec_t *fsv_records(fsv_t *s, size_t *n)
{
    pthread_mutex_lock(&s->mu);
    cr_assert_eq(s->fail[0], '\0', "the fake appliance: %s", s->fail);
    fsv_rec_t *copy = tm_malloc((s->n ? s->n : 1) * sizeof *copy);
    cr_assert_not_null(copy);
    if (s->n)
        memcpy(copy, s->recs, s->n * sizeof *copy);
    *n = s->n;
    pthread_mutex_unlock(&s->mu);
    return copy;
}

void fsv_stop(fsv_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_mutex_unlock(&s->mu);
    cr_assert_eq(write(s->wake[1], "x", 1), 1);
    pthread_join(s->thread, NULL);
    cr_assert_eq(s->fail[0], '\0', "the fake appliance: %s", s->fail);
    if (s->cfd >= 0)
        close(s->cfd);
    close(s->lfd);
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    tm_free(s->recs);
    tm_free(s->prep);
    tm_free(s->batch);
    tm_free(s->scratch);
    tm_free(s);
}
