/* The client tests' stand-in for the appliance's API (fake_api.h). */
#include "tests/cli/fake_api.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/mem.h"

struct fake_api {
    const fa_route_t *routes;
    size_t nroutes;
    unsigned *used; /* answers given per route */
    int listen_fd;
    int stop_pipe[2];
    pthread_t thread;
    char addr[64];
    pthread_mutex_t lock;
    fa_request_t reqs[FA_MAX_REQUESTS];
    size_t nreqs;
};

static const char *fa__reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 500: return "Internal Server Error";
    default: return "Whatever";
    }
}

/* Copy header name's value (case-insensitive name) from head into out. */
static void fa__header(const char *head, const char *name, char *out, size_t len)
{
    size_t n = strlen(name);
    out[0] = '\0';
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        const char *l = line + 2;
        if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
            const char *v = l + n + 1;
            while (*v == ' ')
                v++;
            const char *end = strstr(v, "\r\n");
            snprintf(out, len, "%.*s", (int)(end ? end - v : (long)strlen(v)), v);
            return;
        }
    }
}

static void fa__write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* the client went away: its problem, seen in its output */
        buf += w;
        len -= (size_t)w;
    }
}

static void fa__serve_one(fake_api_t *fa, int fd)
{
    char buf[16384];
    size_t len = 0;
    char *end = NULL;
    fa_request_t r = {0};

    while (!end && len < sizeof buf - 1) {
        ssize_t got = read(fd, buf + len, sizeof buf - 1 - len);
        if (got <= 0)
            return;
        len += (size_t)got;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end)
        return;
    *end = '\0';
    char clen[32];
    fa__header(buf, "Content-Length", clen, sizeof clen);
    size_t want = (size_t)strtoul(clen, NULL, 10);
    size_t have = len - (size_t)(end + 4 - buf);
    while (have < want && len < sizeof buf - 1) {
        ssize_t got = read(fd, buf + len, sizeof buf - 1 - len);
        if (got <= 0)
            return;
        len += (size_t)got;
        have += (size_t)got;
    }
    buf[len] = '\0';

    sscanf(buf, "%15s %511s", r.method, r.target);
    fa__header(buf, "Authorization", r.authorization, sizeof r.authorization);
    fa__header(buf, "Content-Type", r.content_type, sizeof r.content_type);
    snprintf(r.body, sizeof r.body, "%s", end + 4);

    const fa_route_t *answer = NULL;
    pthread_mutex_lock(&fa->lock);
    for (size_t k = 0; k < fa->nroutes && !answer; k++) {
        const fa_route_t *rt = &fa->routes[k];
        if (strcmp(rt->method, r.method) != 0 || strcmp(rt->target, r.target) != 0)
            continue;
        if (rt->times && fa->used[k] >= rt->times)
            continue;
        fa->used[k]++;
        answer = rt;
    }
    if (fa->nreqs < FA_MAX_REQUESTS)
        fa->reqs[fa->nreqs++] = r;
    pthread_mutex_unlock(&fa->lock);

    static const fa_route_t missing = {
        "", "", 404,
        "{\"appliance\":\"00112233aabbccdd\",\"error\":{\"code\":\"not-found\",\"message\":\"no such path\"}}", 0};
    if (!answer)
        answer = &missing;
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     answer->status, fa__reason(answer->status), strlen(answer->body));
    fa__write_all(fd, head, (size_t)n);
    fa__write_all(fd, answer->body, strlen(answer->body));
}

static void *fa__main(void *arg)
{
    fake_api_t *fa = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = fa->listen_fd, .events = POLLIN}, {.fd = fa->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        if (p[1].revents)
            return NULL;
        int fd = accept(fa->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        fa__serve_one(fa, fd);
        close(fd);
    }
}

fake_api_t *fa_start(const fa_route_t *routes, size_t n)
{
    fake_api_t *fa = tm_calloc(1, sizeof *fa);
    cr_assert_not_null(fa);
    fa->routes = routes;
    fa->nroutes = n;
    fa->used = tm_calloc(n ? n : 1, sizeof *fa->used);
    cr_assert_not_null(fa->used);
    pthread_mutex_init(&fa->lock, NULL);

    fa->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fa->listen_fd, 0, "socket: %s", strerror(errno));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fa->listen_fd, (struct sockaddr *)&sin, sizeof sin), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(fa->listen_fd, 16), 0, "listen: %s", strerror(errno));
    socklen_t sl = sizeof sin;
    cr_assert_eq(getsockname(fa->listen_fd, (struct sockaddr *)&sin, &sl), 0);
    snprintf(fa->addr, sizeof fa->addr, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    cr_assert_eq(pipe2(fa->stop_pipe, O_CLOEXEC), 0);
    cr_assert_eq(pthread_create(&fa->thread, NULL, fa__main, fa), 0);
    return fa;
}

const char *fa_addr(const fake_api_t *fa)
{
    return fa->addr;
}

size_t fa_count(fake_api_t *fa)
{
    pthread_mutex_lock(&fa->lock);
    size_t n = fa->nreqs;
    pthread_mutex_unlock(&fa->lock);
    return n;
}

fa_request_t fa_request(fake_api_t *fa, size_t i)
{
    pthread_mutex_lock(&fa->lock);
    cr_assert_lt(i, fa->nreqs, "request %zu of %zu", i, fa->nreqs);
    fa_request_t r = fa->reqs[i];
    pthread_mutex_unlock(&fa->lock);
    return r;
}

void fa_stop(fake_api_t *fa)
{
    if (!fa)
        return;
    cr_assert_eq(write(fa->stop_pipe[1], "x", 1), 1);
    pthread_join(fa->thread, NULL);
    close(fa->stop_pipe[0]);
    close(fa->stop_pipe[1]);
    close(fa->listen_fd);
    pthread_mutex_destroy(&fa->lock);
    tm_free(fa->used);
    tm_free(fa);
}
