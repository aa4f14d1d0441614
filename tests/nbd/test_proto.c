/*
 * The NBD byte layouts and request rules of nbd/proto.c, without a socket:
 * exact bytes of what the server sends, every length check of what it
 * parses, and the verdict on each kind of bad request.
 */
#include <errno.h>
#include <string.h>

#include "base/err.h"
#include "nbdt.h"

Test(proto, big_endian_helpers)
{
    uint8_t b[8];
    tm_put_be16(b, 0x0102);
    cr_assert(memcmp(b, "\x01\x02", 2) == 0);
    tm_put_be32(b, 0x01020304u);
    cr_assert(memcmp(b, "\x01\x02\x03\x04", 4) == 0);
    tm_put_be64(b, 0x0102030405060708ull);
    cr_assert(memcmp(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8) == 0);
    cr_assert_eq(tm_get_be16(b), 0x0102);
    cr_assert_eq(tm_get_be32(b), 0x01020304u);
    cr_assert_eq(tm_get_be64(b), 0x0102030405060708ull);
    tm_put_be64(b, UINT64_MAX);
    cr_assert_eq(tm_get_be64(b), UINT64_MAX);
}

Test(proto, greeting_and_reply_bytes)
{
    uint8_t g[NBD_GREETING_LEN];
    nbd_proto_put_greeting(g);
    cr_assert(memcmp(g, "NBDMAGICIHAVEOPT\x00\x03", sizeof g) == 0);

    uint8_t r[NBD_OPT_REPLY_HDR_LEN];
    nbd_proto_put_opt_reply_hdr(r, NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, 7);
    cr_assert(memcmp(r, "\x00\x03\xe8\x89\x04\x55\x65\xa9"
                        "\x00\x00\x00\x07"
                        "\x80\x00\x00\x06"
                        "\x00\x00\x00\x07",
                     sizeof r) == 0);

    uint8_t s[NBD_REPLY_HDR_LEN];
    nbd_proto_put_simple_reply(s, NBD_EINVAL, 0x1122334455667788ull);
    cr_assert(memcmp(s, "\x67\x44\x66\x98\x00\x00\x00\x16\x11\x22\x33\x44\x55\x66\x77\x88", sizeof s) == 0);

    uint8_t e[NBD_INFO_EXPORT_LEN];
    nbd_proto_put_info_export(e, 0x100000, 0x0143);
    cr_assert(memcmp(e, "\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x01\x43", sizeof e) == 0);

    uint8_t bs[NBD_INFO_BLOCK_SIZE_LEN];
    nbd_proto_put_info_block_size(bs, 1, 4096, NBD_MAX_REQUEST);
    cr_assert(memcmp(bs, "\x00\x03\x00\x00\x00\x01\x00\x00\x10\x00\x02\x00\x00\x00", sizeof bs) == 0);

    uint8_t x[NBD_EXPORT_NAME_REPLY_LEN];
    nbd_proto_put_export_name_reply(x, 512, 0x0003);
    cr_assert(memcmp(x, "\x00\x00\x00\x00\x00\x00\x02\x00\x00\x03", sizeof x) == 0);
}

Test(proto, request_header_decodes)
{
    const uint8_t b[NBD_REQ_HDR_LEN] = {0x25, 0x60, 0x95, 0x13, 0x00, 0x01, 0x00, 0x06, 1, 2, 3, 4,
                                        5,    6,    7,    8,    0,    0,    0,    0,    0, 0, 0x10, 0,
                                        0,    0,    0x02, 0};
    nbd_req_hdr_t h;
    nbd_proto_get_req_hdr(b, &h);
    cr_assert_eq(h.magic, NBD_REQUEST_MAGIC);
    cr_assert_eq(h.flags, NBD_CMD_FLAG_FUA);
    cr_assert_eq(h.type, NBD_CMD_WRITE_ZEROES);
    cr_assert_eq(h.handle, 0x0102030405060708ull);
    cr_assert_eq(h.offset, 0x1000);
    cr_assert_eq(h.length, 0x200);

    const uint8_t o[NBD_OPT_HDR_LEN] = {'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 0, 0, 7, 0, 1, 0, 0};
    nbd_opt_hdr_t oh;
    nbd_proto_get_opt_hdr(o, &oh);
    cr_assert_eq(oh.magic, NBD_IHAVEOPT);
    cr_assert_eq(oh.opt, NBD_OPT_GO);
    cr_assert_eq(oh.len, 65536);
}

Test(proto, go_data_is_checked_exactly)
{
    uint8_t d[NBD_MAX_NAME + 64];
    nbd_go_req_t g;
    const char *why = NULL;
    const uint16_t infos[] = {NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE};

    size_t len = nbdt_go_data(d, "disk0", infos, 2);
    cr_assert_eq(nbd_proto_parse_go(d, (uint32_t)len, &g, &why), 0);
    cr_assert_eq(g.name_len, 5);
    cr_assert(memcmp(g.name, "disk0", 5) == 0);
    cr_assert_eq(g.ninfo, 2);
    cr_assert(nbd_proto_go_wants(&g, NBD_INFO_NAME));
    cr_assert(nbd_proto_go_wants(&g, NBD_INFO_BLOCK_SIZE));
    cr_assert(!nbd_proto_go_wants(&g, NBD_INFO_DESCRIPTION));

    /* An empty name (the default export) is a valid request. */
    len = nbdt_go_data(d, "", NULL, 0);
    cr_assert_eq(len, 6);
    cr_assert_eq(nbd_proto_parse_go(d, 6, &g, &why), 0);
    cr_assert_eq(g.name_len, 0);

    /* Every length that does not add up exactly. */
    len = nbdt_go_data(d, "disk0", infos, 2);
    cr_assert_eq(nbd_proto_parse_go(d, (uint32_t)len - 1, &g, &why), -EINVAL, "short by one");
    cr_assert_eq(nbd_proto_parse_go(d, (uint32_t)len + 1, &g, &why), -EINVAL, "one byte extra");
    cr_assert_eq(nbd_proto_parse_go(d, 5, &g, &why), -EINVAL, "shorter than the fixed fields");
    cr_assert_not_null(why);
    tm_put_be32(d, 0xffffffffu); /* a name length that would wrap 32-bit sums */
    cr_assert_eq(nbd_proto_parse_go(d, (uint32_t)len, &g, &why), -EINVAL);
    tm_put_be32(d, 6); /* the name swallows the info count */
    cr_assert_eq(nbd_proto_parse_go(d, (uint32_t)len, &g, &why), -EINVAL);
    len = nbdt_go_data(d, "disk0", infos, 2);
    tm_put_be16(d + 4 + 5, 0xffff); /* more info requests than bytes */
    cr_assert_eq(nbd_proto_parse_go(d, (uint32_t)len, &g, &why), -EINVAL);

    /* Names: a NUL inside, and the 4096-byte limit. */
    len = nbdt_go_data(d, "ab", NULL, 0);
    d[5] = '\0';
    cr_assert_eq(nbd_proto_parse_go(d, (uint32_t)len, &g, &why), -EINVAL);
    cr_assert_str_eq(why, "export name contains a NUL byte");
    char name[NBD_MAX_NAME + 2];
    memset(name, 'n', NBD_MAX_NAME);
    name[NBD_MAX_NAME] = '\0';
    len = nbdt_go_data(d, name, NULL, 0);
    cr_assert_eq(nbd_proto_parse_go(d, (uint32_t)len, &g, &why), 0, "4096 bytes is allowed");
    name[NBD_MAX_NAME] = 'n';
    name[NBD_MAX_NAME + 1] = '\0';
    len = nbdt_go_data(d, name, NULL, 0);
    cr_assert_eq(nbd_proto_parse_go(d, (uint32_t)len, &g, &why), -EINVAL, "4097 bytes is not");
}

static uint32_t check(uint16_t type, uint16_t flags, uint64_t off, uint32_t len, uint64_t size, uint16_t tflags)
{
    nbd_req_hdr_t h = {.magic = NBD_REQUEST_MAGIC, .flags = flags, .type = type, .offset = off, .length = len};
    return nbd_proto_check_req(&h, size, tflags);
}

#define RW                                                                                                          \
    (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |                            \
     NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN)
#define RO (NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_CAN_MULTI_CONN)

Test(proto, request_verdicts)
{
    const uint64_t size = 1 << 20;
    /* In range. */
    cr_assert_eq(check(NBD_CMD_READ, 0, 0, 4096, size, RW), 0);
    cr_assert_eq(check(NBD_CMD_READ, 0, size - 1, 1, size, RW), 0);
    cr_assert_eq(check(NBD_CMD_READ, 0, size, 0, size, RW), 0, "empty read at the end");
    cr_assert_eq(check(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 512, 512, size, RW), 0);
    cr_assert_eq(check(NBD_CMD_TRIM, 0, 0, (uint32_t)size, size, RW), 0);
    cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA, 0, 4096, size, RW), 0);
    cr_assert_eq(check(NBD_CMD_FLUSH, 0, 0, 0, size, RW), 0);
    cr_assert_eq(check(NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 4096, size, RW), 0, "FUA is accepted on any command");
    cr_assert_eq(check(NBD_CMD_READ, 0, 0, NBD_MAX_REQUEST, 1ull << 40, RW), 0);
    cr_assert_eq(check(NBD_CMD_TRIM, 0, 0, UINT32_MAX, 1ull << 40, RW), 0, "trims are not bounded by the block size");

    /* Out of range: EINVAL for reads and trims, ENOSPC for writes (proto.md). */
    cr_assert_eq(check(NBD_CMD_READ, 0, size - 512, 4096, size, RW), NBD_EINVAL);
    cr_assert_eq(check(NBD_CMD_READ, 0, size + 1, 0, size, RW), NBD_EINVAL);
    cr_assert_eq(check(NBD_CMD_READ, 0, UINT64_MAX - 511, 1024, size, RW), NBD_EINVAL, "offset + length wraps");
    cr_assert_eq(check(NBD_CMD_TRIM, 0, size, 1, size, RW), NBD_EINVAL);
    cr_assert_eq(check(NBD_CMD_WRITE, 0, size - 1, 2, size, RW), NBD_ENOSPC);
    cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, 0, UINT64_MAX, 1, size, RW), NBD_ENOSPC);

    /* Oversize payloads, checked before anything else about them. */
    cr_assert_eq(check(NBD_CMD_READ, 0, 0, NBD_MAX_REQUEST + 1, 1ull << 40, RW), NBD_EOVERFLOW);
    cr_assert_eq(check(NBD_CMD_WRITE, 0, 0, UINT32_MAX, 1ull << 40, RO), NBD_EOVERFLOW);

    /* Read-only exports. */
    cr_assert_eq(check(NBD_CMD_WRITE, 0, 0, 512, size, RO), NBD_EPERM);
    cr_assert_eq(check(NBD_CMD_TRIM, 0, 0, 512, size, RO), NBD_EPERM);
    cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, 0, 0, 512, size, RO), NBD_EPERM);
    cr_assert_eq(check(NBD_CMD_READ, 0, 0, 512, size, RO), 0);
    cr_assert_eq(check(NBD_CMD_FLUSH, 0, 0, 0, size, RO), 0, "a flush with nothing to flush");

    /* Flags not allowed for the command or not advertised. */
    cr_assert_eq(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, size, RW), NBD_EINVAL);
    cr_assert_eq(check(NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0, 512, size, RW), NBD_EINVAL);
    cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0, 512, size, RW), NBD_EINVAL);
    cr_assert_eq(check(NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 512, size, RO), NBD_EINVAL, "FUA was not advertised");
    cr_assert_eq(check(NBD_CMD_READ, 0x8000, 0, 512, size, RW), NBD_EINVAL);

    /* Commands not offered, or unknown. */
    uint16_t no_trim = RW & ~(NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES);
    cr_assert_eq(check(NBD_CMD_TRIM, 0, 0, 512, size, no_trim), NBD_EINVAL);
    cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, 0, 0, 512, size, no_trim), NBD_EINVAL);
    cr_assert_eq(check(NBD_CMD_CACHE, 0, 0, 512, size, RW), NBD_EINVAL);
    cr_assert_eq(check(NBD_CMD_BLOCK_STATUS, 0, 0, 512, size, RW), NBD_EINVAL);
    cr_assert_eq(check(99, 0, 0, 0, size, RW), NBD_EINVAL);

    /* FLUSH and DISC carry no range. */
    cr_assert_eq(check(NBD_CMD_FLUSH, 0, 1, 0, size, RW), NBD_EINVAL);
    cr_assert_eq(check(NBD_CMD_FLUSH, 0, 0, 1, size, RW), NBD_EINVAL);
    cr_assert_eq(check(NBD_CMD_DISC, 0, 0, 0, size, RW), 0);
}

static void op_dummy(nbd_io_t *io)
{
    (void)io;
}

Test(proto, transmission_flags_follow_the_backend)
{
    cr_assert_eq(nbd_proto_tflags(&nbd_file_ops, false, true), RW);
    cr_assert_eq(nbd_proto_tflags(&nbd_file_ops, false, false), RW & ~NBD_FLAG_CAN_MULTI_CONN);
    cr_assert_eq(nbd_proto_tflags(&nbd_file_ops, true, true), RO);
    cr_assert_eq(nbd_proto_tflags(&nbd_file_ops, true, false), RO & ~NBD_FLAG_CAN_MULTI_CONN,
                 "a read-only name may be another disk on each connection: the backend says");

    nbd_backend_ops_t ops = {.read = op_dummy, .write = op_dummy};
    cr_assert_eq(nbd_proto_tflags(&ops, false, false), NBD_FLAG_HAS_FLAGS, "no flush, no FUA, no trim, no zero");
    ops.write = NULL;
    cr_assert_eq(nbd_proto_tflags(&ops, false, true), RO, "no write: read-only");
    ops = (nbd_backend_ops_t){.read = op_dummy, .write = op_dummy, .zero = op_dummy};
    cr_assert_eq(nbd_proto_tflags(&ops, false, false), NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_WRITE_ZEROES);
}

Test(proto, errors_map_to_nbd_values)
{
    cr_assert_eq(nbd_proto_error(0), 0);
    cr_assert_eq(nbd_proto_error(-EPERM), NBD_EPERM);
    cr_assert_eq(nbd_proto_error(-EROFS), NBD_EPERM);
    cr_assert_eq(nbd_proto_error(-EIO), NBD_EIO);
    cr_assert_eq(nbd_proto_error(-ENOMEM), NBD_ENOMEM);
    cr_assert_eq(nbd_proto_error(-EINVAL), NBD_EINVAL);
    cr_assert_eq(nbd_proto_error(-ENOSPC), NBD_ENOSPC);
    cr_assert_eq(nbd_proto_error(-EDQUOT), NBD_ENOSPC);
    cr_assert_eq(nbd_proto_error(-EFBIG), NBD_ENOSPC);
    cr_assert_eq(nbd_proto_error(-EOVERFLOW), NBD_EOVERFLOW);
    cr_assert_eq(nbd_proto_error(-ESHUTDOWN), NBD_ESHUTDOWN);
    cr_assert_eq(nbd_proto_error(-EBADF), NBD_EIO, "anything else is EIO");
    cr_assert_eq(nbd_proto_error(TM_E__BASE - 1), NBD_EIO);

    cr_assert_eq(nbd_proto_open_error(-ENOENT), NBD_REP_ERR_UNKNOWN);
    cr_assert_eq(nbd_proto_open_error(-EACCES), NBD_REP_ERR_POLICY);
    cr_assert_eq(nbd_proto_open_error(-EPERM), NBD_REP_ERR_POLICY);
    cr_assert_eq(nbd_proto_open_error(-EINVAL), NBD_REP_ERR_INVALID);
    cr_assert_eq(nbd_proto_open_error(-ESHUTDOWN), NBD_REP_ERR_SHUTDOWN);
    cr_assert_eq(nbd_proto_open_error(-EIO), NBD_REP_ERR_UNKNOWN);

    cr_assert_str_eq(nbd_proto_opt_name(NBD_OPT_GO), "NBD_OPT_GO");
    cr_assert_str_eq(nbd_proto_opt_name(12345), "unknown option");
    cr_assert_str_eq(nbd_proto_cmd_name(NBD_CMD_WRITE_ZEROES), "NBD_CMD_WRITE_ZEROES");
    cr_assert_str_eq(nbd_proto_cmd_name(99), "unknown command");
}
