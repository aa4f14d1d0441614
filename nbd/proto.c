/* NBD byte layouts and request rules; the layouts are in nbd_int.h. */
#include "nbd/nbd_int.h"

#include <errno.h>
#include <string.h>

void nbd_proto_get_opt_hdr(const uint8_t *p, nbd_opt_hdr_t *h)
{
    h->magic = tm_get_be64(p);
    h->opt = tm_get_be32(p + 8);
    h->len = tm_get_be32(p + 12);
}

int nbd_proto_check_name(const uint8_t *name, uint32_t len, const char **why)
{
    if (len > NBD_MAX_NAME) {
        *why = "export name longer than 4096 bytes";
        return -EINVAL;
    }
    if (len > 0 && memchr(name, 0, len) != NULL) {
        *why = "export name contains a NUL byte";
        return -EINVAL;
    }
    return 0;
}

int nbd_proto_parse_go(const uint8_t *data, uint32_t len, nbd_go_req_t *out, const char **why)
{
    /* Every length is compared with what is left before it is used, in
     * 64-bit arithmetic so that no client value can wrap the sum. */
    if (len < 4 + 2) {
        *why = "option data shorter than a name length and an info count";
        return -EINVAL;
    }
    uint32_t name_len = tm_get_be32(data);
    if ((uint64_t)name_len + 4 + 2 > len) {
        *why = "export name length past the end of the option";
        return -EINVAL;
    }
    uint16_t ninfo = tm_get_be16(data + 4 + name_len);
    if ((uint64_t)4 + name_len + 2 + 2 * (uint64_t)ninfo != len) {
        *why = "info request count does not match the option length";
        return -EINVAL;
    }
    if (nbd_proto_check_name(data + 4, name_len, why) < 0)
        return -EINVAL;
    out->name = data + 4;
    out->name_len = name_len;
    out->ninfo = ninfo;
    out->infos = data + 4 + name_len + 2;
    return 0;
}

bool nbd_proto_go_wants(const nbd_go_req_t *g, uint16_t t)
{
    for (uint16_t i = 0; i < g->ninfo; i++)
        if (tm_get_be16(g->infos + 2 * (size_t)i) == t)
            return true;
    return false;
}

void nbd_proto_get_req_hdr(const uint8_t *p, nbd_req_hdr_t *h)
{
    h->magic = tm_get_be32(p);
    h->flags = tm_get_be16(p + 4);
    h->type = tm_get_be16(p + 6);
    h->handle = tm_get_be64(p + 8);
    h->offset = tm_get_be64(p + 16);
    h->length = tm_get_be32(p + 24);
}

/* Command flags a client may set on each command, given what was advertised.
 * FUA is valid on every command once SEND_FUA is advertised (proto.md: the
 * server must accept it, even by ignoring it). DF needs structured replies,
 * which this server never negotiates, so it is never allowed. */
static uint16_t nbd__allowed_flags(uint16_t type, uint16_t tflags)
{
    uint16_t fua = (tflags & NBD_FLAG_SEND_FUA) ? NBD_CMD_FLAG_FUA : 0;
    switch (type) {
    case NBD_CMD_WRITE_ZEROES:
        return (uint16_t)(fua | NBD_CMD_FLAG_NO_HOLE);
    case NBD_CMD_DISC:
        return 0;
    default:
        return fua;
    }
}

uint32_t nbd_proto_check_req(const nbd_req_hdr_t *h, uint64_t size, uint16_t tflags)
{
    bool ro = (tflags & NBD_FLAG_READ_ONLY) != 0;
    uint16_t needs = 0; /* the transmission flag that offers the command */
    bool writes = false;

    switch (h->type) {
    case NBD_CMD_READ:
    case NBD_CMD_DISC:
        break;
    case NBD_CMD_WRITE:
        writes = true;
        break;
    case NBD_CMD_FLUSH:
        needs = NBD_FLAG_SEND_FLUSH;
        break;
    case NBD_CMD_TRIM:
        needs = NBD_FLAG_SEND_TRIM;
        writes = true;
        break;
    case NBD_CMD_WRITE_ZEROES:
        needs = NBD_FLAG_SEND_WRITE_ZEROES;
        writes = true;
        break;
    default:
        return NBD_EINVAL; /* CACHE, BLOCK_STATUS and anything unknown */
    }

    if (h->flags & ~nbd__allowed_flags(h->type, tflags))
        return NBD_EINVAL;

    if ((h->type == NBD_CMD_READ || h->type == NBD_CMD_WRITE) && h->length > NBD_MAX_REQUEST)
        return NBD_EOVERFLOW;

    if (writes && ro)
        return NBD_EPERM;

    /* A flush on an export that offers none (read-only ones) has nothing to
     * make durable: it succeeds without reaching the backend (the server
     * checks tflags again). */
    if (needs != 0 && needs != NBD_FLAG_SEND_FLUSH && !(tflags & needs))
        return NBD_EINVAL;

    if (h->type == NBD_CMD_DISC || h->type == NBD_CMD_FLUSH)
        return (h->offset != 0 || h->length != 0) ? NBD_EINVAL : 0;

    if (h->offset > size || h->length > size - h->offset)
        return (h->type == NBD_CMD_WRITE || h->type == NBD_CMD_WRITE_ZEROES) ? NBD_ENOSPC : NBD_EINVAL;

    return 0;
}

void nbd_proto_put_greeting(uint8_t *p)
{
    tm_put_be64(p, NBD_MAGIC);
    tm_put_be64(p + 8, NBD_IHAVEOPT);
    tm_put_be16(p + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

void nbd_proto_put_opt_reply_hdr(uint8_t *p, uint32_t opt, uint32_t type, uint32_t len)
{
    tm_put_be64(p, NBD_REP_MAGIC);
    tm_put_be32(p + 8, opt);
    tm_put_be32(p + 12, type);
    tm_put_be32(p + 16, len);
}

void nbd_proto_put_export_name_reply(uint8_t *p, uint64_t size, uint16_t tflags)
{
    tm_put_be64(p, size);
    tm_put_be16(p + 8, tflags);
}

void nbd_proto_put_info_export(uint8_t *p, uint64_t size, uint16_t tflags)
{
    tm_put_be16(p, NBD_INFO_EXPORT);
    tm_put_be64(p + 2, size);
    tm_put_be16(p + 10, tflags);
}

void nbd_proto_put_info_block_size(uint8_t *p, uint32_t min, uint32_t preferred, uint32_t max)
{
    tm_put_be16(p, NBD_INFO_BLOCK_SIZE);
    tm_put_be32(p + 2, min);
    tm_put_be32(p + 6, preferred);
    tm_put_be32(p + 10, max);
}

void nbd_proto_put_simple_reply(uint8_t *p, uint32_t error, uint64_t handle)
{
    tm_put_be32(p, NBD_SIMPLE_REPLY_MAGIC);
    tm_put_be32(p + 4, error);
    tm_put_be64(p + 8, handle);
}

uint16_t nbd_proto_tflags(const nbd_backend_ops_t *ops, bool read_only, bool multi_conn)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS;
    if (read_only || ops->write == NULL) {
        /* Nothing a client writes can be cached; but whether two
         * connections to the same name see the same bytes is the backend's
         * to say (a name like web1/disk0@latest may be another point on
         * each connection). */
        return (uint16_t)(f | NBD_FLAG_READ_ONLY | (multi_conn ? NBD_FLAG_CAN_MULTI_CONN : 0));
    }
    if (ops->flush != NULL)
        f |= NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA;
    if (ops->trim != NULL)
        f |= NBD_FLAG_SEND_TRIM;
    if (ops->zero != NULL)
        f |= NBD_FLAG_SEND_WRITE_ZEROES;
    if (multi_conn)
        f |= NBD_FLAG_CAN_MULTI_CONN;
    return f;
}

uint32_t nbd_proto_error(int status)
{
    switch (status) {
    case 0:
        return 0;
    case -EPERM:
    case -EACCES:
    case -EROFS:
        return NBD_EPERM;
    case -ENOMEM:
        return NBD_ENOMEM;
    case -EINVAL:
        return NBD_EINVAL;
    case -ENOSPC:
    case -EDQUOT:
    case -EFBIG:
        return NBD_ENOSPC;
    case -EOVERFLOW:
        return NBD_EOVERFLOW;
    case -ESHUTDOWN:
    case -ECANCELED:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

uint32_t nbd_proto_open_error(int status)
{
    switch (status) {
    case -EPERM:
    case -EACCES:
        return NBD_REP_ERR_POLICY;
    case -EINVAL:
        return NBD_REP_ERR_INVALID;
    case -ESHUTDOWN:
        return NBD_REP_ERR_SHUTDOWN;
    default:
        return NBD_REP_ERR_UNKNOWN;
    }
}

const char *nbd_proto_opt_name(uint32_t opt)
{
    switch (opt) {
    case NBD_OPT_EXPORT_NAME:
        return "NBD_OPT_EXPORT_NAME";
    case NBD_OPT_ABORT:
        return "NBD_OPT_ABORT";
    case NBD_OPT_LIST:
        return "NBD_OPT_LIST";
    case NBD_OPT_STARTTLS:
        return "NBD_OPT_STARTTLS";
    case NBD_OPT_INFO:
        return "NBD_OPT_INFO";
    case NBD_OPT_GO:
        return "NBD_OPT_GO";
    case NBD_OPT_STRUCTURED_REPLY:
        return "NBD_OPT_STRUCTURED_REPLY";
    case NBD_OPT_LIST_META_CONTEXT:
        return "NBD_OPT_LIST_META_CONTEXT";
    case NBD_OPT_SET_META_CONTEXT:
        return "NBD_OPT_SET_META_CONTEXT";
    case NBD_OPT_EXTENDED_HEADERS:
        return "NBD_OPT_EXTENDED_HEADERS";
    default:
        return "unknown option";
    }
}

const char *nbd_proto_cmd_name(uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ:
        return "NBD_CMD_READ";
    case NBD_CMD_WRITE:
        return "NBD_CMD_WRITE";
    case NBD_CMD_DISC:
        return "NBD_CMD_DISC";
    case NBD_CMD_FLUSH:
        return "NBD_CMD_FLUSH";
    case NBD_CMD_TRIM:
        return "NBD_CMD_TRIM";
    case NBD_CMD_CACHE:
        return "NBD_CMD_CACHE";
    case NBD_CMD_WRITE_ZEROES:
        return "NBD_CMD_WRITE_ZEROES";
    case NBD_CMD_BLOCK_STATUS:
        return "NBD_CMD_BLOCK_STATUS";
    default:
        return "unknown command";
    }
}
