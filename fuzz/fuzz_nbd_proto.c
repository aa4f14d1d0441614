/*
 * Fuzz target: the NBD decoders and checks of nbd/proto.c that see client
 * bytes: nbd_proto_get_opt_hdr, nbd_proto_check_name, nbd_proto_parse_go,
 * nbd_proto_go_wants, nbd_proto_get_req_hdr, nbd_proto_check_req,
 * nbd_proto_payload_len, and the log names of client values
 * (nbd_proto_opt_name, nbd_proto_cmd_name).
 *
 * Input: an 11-byte prefix describing the export the client talks to, then
 * the client's byte stream (the bits are FUZZ_NBD_* in fuzz_params.h):
 *
 *   u8  config   bit 0-3: the backend offers write, flush, trim, zero;
 *                bit 4: read-only export; bit 5: multi-conn;
 *                bit 6: the stream starts in the transmission phase;
 *                bit 7: judge requests with the raw flags below instead of
 *                       what nbd_proto_tflags advertises
 *   u16 tflags   (big-endian) raw transmission flags, used with bit 7
 *   u64 size     (big-endian) the export's size
 *
 * The stream is walked as the server's decoder (nbd/conn.c) walks it:
 * options (16-byte header, then its data) until one opens an export
 * (EXPORT_NAME, or a GO that parses), then requests (28-byte header, then a
 * WRITE's payload), stopping where the server would close (bad magic, an
 * option over NBD_MAX_OPTION, ABORT, DISC) or where the bytes run out. Every
 * header and option is an exact-size copy, so ASan sees any read past it.
 * The whole stream also goes straight to parse_go and check_name.
 *
 * Besides "no crash, no read outside a buffer", every result is compared
 * with a model written from the contract in nbd/nbd_int.h, and the
 * invariants the server relies on are asserted on their own: a parsed GO
 * names an export of at most NBD_MAX_NAME bytes without NUL, and its lengths
 * add up to exactly the option's; a request the checker accepts is a known
 * command with allowed flags, within the export, within NBD_MAX_REQUEST for
 * READ/WRITE, and never write-like on a read-only export. Each request is
 * judged for every export shape nbd_proto_tflags can advertise and for the
 * sizes at its edges, not only for the one in the prefix.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/endian.h"
#include "base/mem.h"
#include "fuzz/fuzz_params.h"
#include "nbd/nbd_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A non-NULL backend operation: nbd_proto_tflags only asks which are
 * present, never calls them. */
static void op_present(nbd_io_t *io)
{
    (void)io;
}

/* Big-endian by hand, not with base/endian.h, so that a helper bug shows. */
static uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v * 256u + p[i];
    return v;
}

static void touch(const uint8_t *p, size_t n)
{
    volatile uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc ^= p[i];
    (void)acc;
}

/* An exact-size copy; NULL for no bytes, as the server passes an empty option. */
static uint8_t *copy_of(const uint8_t *p, size_t n)
{
    if (n == 0)
        return NULL;
    uint8_t *c = tm_malloc(n);
    FUZZ_ASSERT(c != NULL);
    memcpy(c, p, n);
    return c;
}

static void check_why(const char *why)
{
    FUZZ_ASSERT(why != NULL && why[0] != '\0');
}

static void check_log_name(const char *s)
{
    FUZZ_ASSERT(s != NULL && strlen(s) > 0);
}

/* ---- handshake --------------------------------------------------------- */

static bool model_name_ok(const uint8_t *name, uint32_t len)
{
    if (len > NBD_MAX_NAME)
        return false;
    for (uint32_t i = 0; i < len; i++)
        if (name[i] == 0)
            return false;
    return true;
}

static bool check_name(const uint8_t *name, uint32_t len)
{
    const char *why = NULL;
    int rc = nbd_proto_check_name(name, len, &why);
    FUZZ_ASSERT(rc == 0 || rc == -EINVAL);
    FUZZ_ASSERT((rc == 0) == model_name_ok(name, len));
    if (rc != 0)
        check_why(why);
    return rc == 0;
}

/* The model of OPT_INFO/OPT_GO data: u32 name length, name, u16 count,
 * count x u16, nothing after. */
static bool model_go_ok(const uint8_t *d, uint32_t len)
{
    if (len < 6)
        return false;
    uint64_t name_len = be(d, 4);
    if (name_len > len - 6u)
        return false;
    uint64_t ninfo = be(d + 4 + name_len, 2);
    return len - 6u - name_len == 2 * ninfo && model_name_ok(d + 4, (uint32_t)name_len);
}

static bool check_go(const uint8_t *d, uint32_t len)
{
    nbd_go_req_t g;
    memset(&g, 0xa5, sizeof g);
    const char *why = NULL;
    int rc = nbd_proto_parse_go(d, len, &g, &why);
    FUZZ_ASSERT(rc == 0 || rc == -EINVAL);
    FUZZ_ASSERT((rc == 0) == model_go_ok(d, len));
    if (rc != 0) {
        check_why(why);
        return false;
    }
    /* Within the option, adding up to exactly its length. */
    FUZZ_ASSERT(g.name == d + 4 && g.name_len == be(d, 4));
    FUZZ_ASSERT(g.name_len <= NBD_MAX_NAME && (g.name_len == 0 || memchr(g.name, 0, g.name_len) == NULL));
    FUZZ_ASSERT(g.infos == d + 4 + g.name_len + 2 && g.ninfo == be(d + 4 + g.name_len, 2));
    FUZZ_ASSERT((uint64_t)4 + g.name_len + 2 + 2 * (uint64_t)g.ninfo == len);
    touch(g.name, g.name_len);
    touch(g.infos, 2 * (size_t)g.ninfo);
    /* The server copies the name out as a string. */
    FUZZ_ASSERT(check_name(g.name, g.name_len));

    /* go_wants is a membership test: the types the server asks about
     * (NBD_INFO_* and the first and last listed) against a scan. Not every
     * listed type: that would be quadratic in a count of up to 32767. */
    uint16_t asked[7] = {0, 1, 2, 3, 4, 0xffff, 0xffff};
    if (g.ninfo > 0) {
        asked[5] = (uint16_t)be(g.infos, 2);
        asked[6] = (uint16_t)be(g.infos + 2 * ((size_t)g.ninfo - 1), 2);
    }
    for (unsigned k = 0; k < 7; k++) {
        bool listed = false;
        for (size_t i = 0; i < g.ninfo && !listed; i++)
            listed = be(g.infos + 2 * i, 2) == asked[k];
        FUZZ_ASSERT(nbd_proto_go_wants(&g, asked[k]) == listed);
    }
    return true;
}

static void check_opt_hdr(const uint8_t *p, const nbd_opt_hdr_t *h)
{
    FUZZ_ASSERT(h->magic == be(p, 8) && h->opt == be(p + 8, 4) && h->len == be(p + 12, 4));
    check_log_name(nbd_proto_opt_name(h->opt));
}

/* ---- transmission ------------------------------------------------------ */

static bool is_write_like(uint16_t type)
{
    return type == NBD_CMD_WRITE || type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES;
}

/* The model of nbd_proto_check_req, in the order nbd_int.h lists the checks;
 * a FLUSH the export does not offer is accepted (the server answers it
 * without the backend: there is nothing to make durable). */
static uint32_t model_check_req(const nbd_req_hdr_t *h, uint64_t size, uint16_t tflags)
{
    uint16_t t = h->type;
    if (t != NBD_CMD_READ && t != NBD_CMD_WRITE && t != NBD_CMD_DISC && t != NBD_CMD_FLUSH && t != NBD_CMD_TRIM &&
        t != NBD_CMD_WRITE_ZEROES)
        return NBD_EINVAL;
    unsigned allowed = 0;
    if (t != NBD_CMD_DISC && (tflags & NBD_FLAG_SEND_FUA))
        allowed |= NBD_CMD_FLAG_FUA;
    if (t == NBD_CMD_WRITE_ZEROES)
        allowed |= NBD_CMD_FLAG_NO_HOLE;
    if ((h->flags & ~allowed) != 0)
        return NBD_EINVAL;
    if ((t == NBD_CMD_READ || t == NBD_CMD_WRITE) && h->length > NBD_MAX_REQUEST)
        return NBD_EOVERFLOW;
    if (is_write_like(t) && (tflags & NBD_FLAG_READ_ONLY))
        return NBD_EPERM;
    if ((t == NBD_CMD_TRIM && !(tflags & NBD_FLAG_SEND_TRIM)) ||
        (t == NBD_CMD_WRITE_ZEROES && !(tflags & NBD_FLAG_SEND_WRITE_ZEROES)))
        return NBD_EINVAL;
    if (t == NBD_CMD_DISC || t == NBD_CMD_FLUSH)
        return h->offset == 0 && h->length == 0 ? 0 : NBD_EINVAL;
    uint64_t end;
    if (__builtin_add_overflow(h->offset, (uint64_t)h->length, &end) || end > size)
        return t == NBD_CMD_WRITE || t == NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
    return 0;
}

/* One verdict: as the model says, and what the server relies on when it is 0. */
static void judge(const nbd_req_hdr_t *h, uint64_t size, uint16_t tflags)
{
    uint32_t v = nbd_proto_check_req(h, size, tflags);
    FUZZ_ASSERT(v == model_check_req(h, size, tflags));
    FUZZ_ASSERT(v == 0 || v == NBD_EINVAL || v == NBD_EOVERFLOW || v == NBD_EPERM || v == NBD_ENOSPC);
    if (is_write_like(h->type) && (tflags & NBD_FLAG_READ_ONLY))
        FUZZ_ASSERT(v != 0);
    if (v != 0)
        return;
    FUZZ_ASSERT(h->type <= NBD_CMD_WRITE_ZEROES && h->type != NBD_CMD_CACHE);
    FUZZ_ASSERT((h->flags & ~(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE)) == 0);
    FUZZ_ASSERT(!(h->flags & NBD_CMD_FLAG_FUA) || (tflags & NBD_FLAG_SEND_FUA));
    FUZZ_ASSERT(!(h->flags & NBD_CMD_FLAG_NO_HOLE) || h->type == NBD_CMD_WRITE_ZEROES);
    switch (h->type) {
    case NBD_CMD_DISC:
    case NBD_CMD_FLUSH:
        FUZZ_ASSERT(h->offset == 0 && h->length == 0);
        break;
    case NBD_CMD_READ:
    case NBD_CMD_WRITE:
        FUZZ_ASSERT(h->length <= NBD_MAX_REQUEST);
        /* fallthrough */
    default:
        /* Within the export, and offset + length cannot wrap. */
        FUZZ_ASSERT(h->offset <= size && h->length <= size - h->offset);
        FUZZ_ASSERT(h->type != NBD_CMD_TRIM || (tflags & NBD_FLAG_SEND_TRIM));
        FUZZ_ASSERT(h->type != NBD_CMD_WRITE_ZEROES || (tflags & NBD_FLAG_SEND_WRITE_ZEROES));
        break;
    }
}

/* What nbd_proto_tflags advertises for config bits 0-5. */
static uint16_t advertised(unsigned cfg)
{
    nbd_backend_ops_t ops = {
        .read = op_present,
        .write = (cfg & FUZZ_NBD_WRITE) ? op_present : NULL,
        .flush = (cfg & FUZZ_NBD_FLUSH) ? op_present : NULL,
        .trim = (cfg & FUZZ_NBD_TRIM) ? op_present : NULL,
        .zero = (cfg & FUZZ_NBD_ZERO) ? op_present : NULL,
    };
    uint16_t f = nbd_proto_tflags(&ops, (cfg & FUZZ_NBD_RO) != 0, (cfg & FUZZ_NBD_MULTI) != 0);
    FUZZ_ASSERT(f & NBD_FLAG_HAS_FLAGS);
    bool ro = (cfg & FUZZ_NBD_RO) || !(cfg & FUZZ_NBD_WRITE);
    FUZZ_ASSERT(((f & NBD_FLAG_READ_ONLY) != 0) == ro);
    if (ro)
        FUZZ_ASSERT(!(f & (NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES)));
    /* multi-conn is the backend's to say, read-only or not */
    FUZZ_ASSERT(((f & NBD_FLAG_CAN_MULTI_CONN) != 0) == ((cfg & FUZZ_NBD_MULTI) != 0));
    return f;
}

/* A request as the server meets it: the export of the prefix, then every
 * export shape and the sizes at the request's edges. */
static void check_request(const nbd_req_hdr_t *h, uint64_t size, uint16_t tflags)
{
    judge(h, size, tflags);
    check_log_name(nbd_proto_cmd_name(h->type));

    uint64_t sizes[5] = {size, 0, UINT64_MAX, h->offset, h->offset};
    uint64_t end;
    if (!__builtin_add_overflow(h->offset, (uint64_t)h->length, &end)) {
        sizes[3] = end;
        sizes[4] = end - (end != 0);
    }
    /* The 64 configurations advertise 17 distinct flag sets. */
    static uint16_t shapes[64];
    static unsigned nshapes;
    if (nshapes == 0) {
        for (unsigned cfg = 0; cfg < 64; cfg++) {
            uint16_t f = advertised(cfg);
            unsigned k = 0;
            while (k < nshapes && shapes[k] != f)
                k++;
            if (k == nshapes)
                shapes[nshapes++] = f;
        }
    }
    for (unsigned k = 0; k < nshapes; k++)
        for (unsigned i = 0; i < 5; i++)
            judge(h, sizes[i], shapes[k]);

    /* The payload to read follows the type alone, whatever the verdict. */
    FUZZ_ASSERT(nbd_proto_payload_len(h) == (h->type == NBD_CMD_WRITE ? h->length : 0));
}

static void check_req_hdr(const uint8_t *p, const nbd_req_hdr_t *h)
{
    FUZZ_ASSERT(h->magic == be(p, 4) && h->flags == be(p + 4, 2) && h->type == be(p + 6, 2));
    FUZZ_ASSERT(h->handle == be(p + 8, 8) && h->offset == be(p + 16, 8) && h->length == be(p + 24, 4));
}

/* ---- the stream -------------------------------------------------------- */

/* Options until one opens an export; false when the server would stop. */
static bool run_options(const uint8_t *s, size_t len, size_t *off)
{
    for (;;) {
        if (len - *off < NBD_OPT_HDR_LEN)
            return false;
        uint8_t *p = copy_of(s + *off, NBD_OPT_HDR_LEN);
        nbd_opt_hdr_t h;
        nbd_proto_get_opt_hdr(p, &h);
        check_opt_hdr(p, &h);
        tm_free(p);
        *off += NBD_OPT_HDR_LEN;
        /* The server closes before allocating anything for these. */
        if (h.magic != NBD_IHAVEOPT || h.len > NBD_MAX_OPTION || h.len > len - *off)
            return false;
        uint8_t *d = copy_of(s + *off, h.len);
        *off += h.len;
        /* Both parsers on every option: they must survive any data. */
        bool name_ok = check_name(d, h.len);
        bool go_ok = check_go(d, h.len);
        tm_free(d);
        if (h.opt == NBD_OPT_ABORT)
            return false;
        if ((h.opt == NBD_OPT_EXPORT_NAME && name_ok) || (h.opt == NBD_OPT_GO && go_ok))
            return true;
    }
}

static void run_requests(const uint8_t *s, size_t len, size_t off, uint64_t size, uint16_t tflags)
{
    while (len - off >= NBD_REQ_HDR_LEN) {
        uint8_t *p = copy_of(s + off, NBD_REQ_HDR_LEN);
        nbd_req_hdr_t h;
        nbd_proto_get_req_hdr(p, &h);
        check_req_hdr(p, &h);
        tm_free(p);
        off += NBD_REQ_HDR_LEN;
        if (h.magic != NBD_REQUEST_MAGIC)
            return;
        check_request(&h, size, tflags);
        if (h.type == NBD_CMD_DISC)
            return;
        uint32_t payload = nbd_proto_payload_len(&h);
        if (payload > len - off)
            return; /* the server waits for the rest */
        if (payload > 0 && nbd_proto_check_req(&h, size, tflags) == 0) {
            /* What the backend would be handed: exactly length bytes. */
            uint8_t *buf = copy_of(s + off, payload);
            touch(buf, payload);
            tm_free(buf);
        }
        off += payload;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The whole input as option data; the server never passes more than
     * NBD_MAX_OPTION, but the parsers must not care. */
    uint32_t n = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
    uint8_t *all = copy_of(data, n);
    check_name(all, n);
    check_go(all, n);
    tm_free(all);

    if (size < FUZZ_NBD_PREFIX_LEN)
        return 0;
    unsigned cfg = data[0];
    uint16_t tflags = (cfg & FUZZ_NBD_RAW_TFLAGS) ? (uint16_t)be(data + 1, 2) : advertised(cfg);
    uint64_t export_size = be(data + 3, 8);
    const uint8_t *s = data + FUZZ_NBD_PREFIX_LEN;
    size_t len = size - FUZZ_NBD_PREFIX_LEN;
    size_t off = 0;
    if ((cfg & FUZZ_NBD_TRANSMISSION) || run_options(s, len, &off)) {
        FUZZ_ASSERT(off <= len);
        run_requests(s, len, off, export_size, tflags);
    }
    return 0;
}
