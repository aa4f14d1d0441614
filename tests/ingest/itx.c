#include "tests/ingest/itx.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/mem.h"

bool itx_err_until(tc_child_t *c, const char *needle)
{
    for (;;) {
        if (strstr(c->err, needle))
            return true;
        if (c->out_fd < 0 && c->err_fd < 0)
            return false;
        struct pollfd p[2] = {{.fd = c->out_fd, .events = POLLIN}, {.fd = c->err_fd, .events = POLLIN}};
        int r = poll(p, 2, ITA_WAIT_MS);
        if (r < 0 && errno == EINTR)
            continue;
        cr_assert_geq(r, 0, "poll: %s", strerror(errno));
        if (r == 0)
            return false;
        if (p[0].revents)
            tc_drain(&c->out_fd, &c->out, &c->out_len);
        if (p[1].revents)
            tc_drain(&c->err_fd, &c->err, &c->err_len);
    }
}

const char *itx_conf(const char *name, const char *text)
{
    const char *path = tc_path(name);
    tc_write_file(path, text);
    return path;
}

void itx_expect_error(ita_agent_t *a, int code, wire_error_t *e)
{
    char r[128];
    for (;;) {
        cr_assert(ita_recv(a), "the server closed without an ERROR (expected %s)", wire_err_name(code));
        if (a->type != WIRE_T_ACK)
            break;
    }
    cr_assert_eq(a->type, WIRE_T_ERROR, "frame type 0x%x, expected ERROR", a->type);
    cr_assert_eq(wire_dec_error(a->body, a->body_len, e, r, sizeof r), 0, "%s", r);
    cr_assert_eq(e->code, code, "ERROR %s (%s), expected %s", wire_err_name(e->code), e->text, wire_err_name(code));
    cr_assert(e->text[0], "ERROR without a reason");
    cr_assert(!ita_recv(a), "the server sent more after ERROR (type 0x%x)", a->type);
}

uint16_t itx_batch_raw(wire_buf_t *b, uint64_t first_seq, uint32_t raw, uint64_t disk_size, uint64_t seed)
{
    enum { CHUNK = 64u << 10 };
    cr_assert(raw % 512 == 0 && raw > 0 && raw <= WIRE_MAX_BATCH_DATA);
    uint16_t count = (uint16_t)((raw + CHUNK - 1) / CHUNK);
    wire_entry_t *e = tm_calloc(count, sizeof *e);
    uint8_t *data = tm_malloc(raw);
    cr_assert(e && data);
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + first_seq + 1;
    for (uint32_t i = 0; i < raw; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(data + i, &x, 8);
    }
    uint32_t off = 0;
    for (uint16_t i = 0; i < count; i++) {
        uint32_t len = raw - off < CHUNK ? raw - off : CHUNK;
        e[i].kind = WIRE_R_WRITE;
        e[i].length = len;
        e[i].offset = ((first_seq + i) * CHUNK) % (disk_size - CHUNK);
        e[i].data = data + off;
        off += len;
    }
    wire_buf_reset(b);
    cr_assert_eq(wire_enc_records(b, first_seq, e, count, false), 0);
    tm_free(e);
    tm_free(data);
    return count;
}

bool itx_quiet(ita_agent_t *a)
{
    if (a->in_off < a->in_len)
        return false;
    struct pollfd pf = {.fd = a->fd, .events = POLLIN};
    return poll(&pf, 1, 0) == 0;
}

unsigned itx_local_port(const ita_agent_t *a)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    cr_assert_eq(getsockname(a->fd, (struct sockaddr *)&sin, &len), 0);
    return ntohs(sin.sin_port);
}
