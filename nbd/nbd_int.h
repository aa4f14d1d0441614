/*
 * Inside the NBD module: the protocol's constants and byte layouts, and the
 * pure encode/decode/validate functions of proto.c (no libuv, no I/O, so
 * tests and fuzzers can call them on any bytes). Not for other modules.
 *
 * Byte layouts (every integer big-endian, "network byte order", as NBD
 * requires; never cast a buffer to a struct, use the helpers below):
 *
 *   greeting (server, 18)   u64 NBDMAGIC, u64 IHAVEOPT, u16 handshake flags
 *   client flags (4)        u32
 *   option (client, 16+n)   u64 IHAVEOPT, u32 option, u32 n, n bytes of data
 *   option reply (20+n)     u64 NBD_REP_MAGIC, u32 option, u32 reply type, u32 n, data
 *   EXPORT_NAME reply       u64 size, u16 transmission flags, 124 zero bytes
 *                           (the zeroes only without NBD_FLAG_C_NO_ZEROES)
 *   OPT_INFO/OPT_GO data    u32 name length, name, u16 count, count x u16 info type
 *   NBD_INFO_EXPORT (12)    u16 type 0, u64 size, u16 transmission flags
 *   NBD_INFO_NAME (2+n)     u16 type 1, name
 *   NBD_INFO_BLOCK_SIZE(14) u16 type 3, u32 minimum, u32 preferred, u32 maximum
 *   NBD_REP_SERVER (4+n+d)  u32 name length, name, description
 *   request (28 [+len])     u32 NBD_REQUEST_MAGIC, u16 command flags, u16 type,
 *                           u64 handle, u64 offset, u32 length [, data for WRITE]
 *   simple reply (16 [+len]) u32 NBD_SIMPLE_REPLY_MAGIC, u32 error, u64 handle
 *                           [, data for a successful READ]
 */
#ifndef TM_NBD_INT_H
#define TM_NBD_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/endian.h"
#include "nbd/nbd.h"

/* ---- constants (names as in proto.md) ---------------------------------- */

#define NBD_MAGIC 0x4e42444d41474943ull     /* "NBDMAGIC" */
#define NBD_IHAVEOPT 0x49484156454f5054ull  /* "IHAVEOPT" */
#define NBD_REP_MAGIC 0x0003e889045565a9ull
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u

#define NBD_GREETING_LEN 18u
#define NBD_CLIENT_FLAGS_LEN 4u
#define NBD_OPT_HDR_LEN 16u
#define NBD_OPT_REPLY_HDR_LEN 20u
#define NBD_EXPORT_NAME_REPLY_LEN 10u
#define NBD_ZERO_PAD_LEN 124u
#define NBD_REQ_HDR_LEN 28u
#define NBD_REPLY_HDR_LEN 16u
#define NBD_INFO_EXPORT_LEN 12u
#define NBD_INFO_BLOCK_SIZE_LEN 14u

/* Handshake flags (server) and client flags. */
#define NBD_FLAG_FIXED_NEWSTYLE 0x1u
#define NBD_FLAG_NO_ZEROES 0x2u
#define NBD_FLAG_C_FIXED_NEWSTYLE 0x1u
#define NBD_FLAG_C_NO_ZEROES 0x2u

/* Options. */
#define NBD_OPT_EXPORT_NAME 1u
#define NBD_OPT_ABORT 2u
#define NBD_OPT_LIST 3u
#define NBD_OPT_STARTTLS 5u
#define NBD_OPT_INFO 6u
#define NBD_OPT_GO 7u
#define NBD_OPT_STRUCTURED_REPLY 8u
#define NBD_OPT_LIST_META_CONTEXT 9u
#define NBD_OPT_SET_META_CONTEXT 10u
#define NBD_OPT_EXTENDED_HEADERS 11u

/* Option reply types; errors have bit 31 set. */
#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_ERR_UNSUP (0x80000000u | 1u)
#define NBD_REP_ERR_POLICY (0x80000000u | 2u)
#define NBD_REP_ERR_INVALID (0x80000000u | 3u)
#define NBD_REP_ERR_PLATFORM (0x80000000u | 4u)
#define NBD_REP_ERR_TLS_REQD (0x80000000u | 5u)
#define NBD_REP_ERR_UNKNOWN (0x80000000u | 6u)
#define NBD_REP_ERR_SHUTDOWN (0x80000000u | 7u)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (0x80000000u | 8u)
#define NBD_REP_ERR_TOO_BIG (0x80000000u | 9u)

/* NBD_REP_INFO types. */
#define NBD_INFO_EXPORT 0u
#define NBD_INFO_NAME 1u
#define NBD_INFO_DESCRIPTION 2u
#define NBD_INFO_BLOCK_SIZE 3u

/* Transmission flags. */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_ROTATIONAL (1u << 4)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)

/* Commands and command flags. */
#define NBD_CMD_READ 0u
#define NBD_CMD_WRITE 1u
#define NBD_CMD_DISC 2u
#define NBD_CMD_FLUSH 3u
#define NBD_CMD_TRIM 4u
#define NBD_CMD_CACHE 5u
#define NBD_CMD_WRITE_ZEROES 6u
#define NBD_CMD_BLOCK_STATUS 7u

#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_CMD_FLAG_DF (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* Error values of replies (proto.md fixes them; they are not this host's errno). */
#define NBD_EPERM 1u
#define NBD_EIO 5u
#define NBD_ENOMEM 12u
#define NBD_EINVAL 22u
#define NBD_ENOSPC 28u
#define NBD_EOVERFLOW 75u
#define NBD_ENOTSUP 95u
#define NBD_ESHUTDOWN 108u

/* ---- decoding ---------------------------------------------------------- */

typedef struct nbd_opt_hdr {
    uint64_t magic;
    uint32_t opt;
    uint32_t len;
} nbd_opt_hdr_t;

/* Decode NBD_OPT_HDR_LEN bytes (the magic is for the caller to check). */
void nbd_proto_get_opt_hdr(const uint8_t *p, nbd_opt_hdr_t *h);

/* The data of NBD_OPT_INFO and NBD_OPT_GO, pointing into the option's bytes. */
typedef struct nbd_go_req {
    const uint8_t *name;
    uint32_t name_len;
    uint16_t ninfo;
    const uint8_t *infos; /* ninfo big-endian u16 */
} nbd_go_req_t;

/* Parse OPT_INFO/OPT_GO data. 0, or -EINVAL when the lengths do not add up
 * exactly or the name is not a valid export name; *why says which. */
int nbd_proto_parse_go(const uint8_t *data, uint32_t len, nbd_go_req_t *out, const char **why);

/* 0 when name[0..len) is a valid export name (no NUL, at most NBD_MAX_NAME
 * bytes), else -EINVAL and *why. */
int nbd_proto_check_name(const uint8_t *name, uint32_t len, const char **why);

/* True when the request asks for info type t. */
bool nbd_proto_go_wants(const nbd_go_req_t *g, uint16_t t);

typedef struct nbd_req_hdr {
    uint32_t magic;
    uint16_t flags;
    uint16_t type;
    uint64_t handle;
    uint64_t offset;
    uint32_t length;
} nbd_req_hdr_t;

/* Decode NBD_REQ_HDR_LEN bytes (the magic is for the caller to check). */
void nbd_proto_get_req_hdr(const uint8_t *p, nbd_req_hdr_t *h);

/*
 * Judge a request against its export (size and transmission flags as
 * advertised). Returns the NBD error value to reply with, or 0 when the
 * request goes to the backend (DISC: when the connection may end). Checks,
 * in this order: unknown command (EINVAL), command flags not allowed for the
 * command or not advertised (EINVAL), READ/WRITE longer than NBD_MAX_REQUEST
 * (EOVERFLOW), write-like command on a read-only export (EPERM), command not
 * offered (EINVAL), range past the end or overflowing (ENOSPC for WRITE and
 * WRITE_ZEROES, EINVAL otherwise), DISC/FLUSH with a nonzero offset or
 * length (EINVAL).
 */
uint32_t nbd_proto_check_req(const nbd_req_hdr_t *h, uint64_t size, uint16_t tflags);

/* Bytes of payload that follow the header whatever the verdict: the length
 * of a WRITE, 0 for any other command. */
static inline uint32_t nbd_proto_payload_len(const nbd_req_hdr_t *h)
{
    return h->type == NBD_CMD_WRITE ? h->length : 0;
}

/* ---- encoding ---------------------------------------------------------- */

/* Each writes exactly its layout's length at p. */
void nbd_proto_put_greeting(uint8_t *p);
void nbd_proto_put_opt_reply_hdr(uint8_t *p, uint32_t opt, uint32_t type, uint32_t len);
void nbd_proto_put_export_name_reply(uint8_t *p, uint64_t size, uint16_t tflags);
void nbd_proto_put_info_export(uint8_t *p, uint64_t size, uint16_t tflags);
void nbd_proto_put_info_block_size(uint8_t *p, uint32_t min, uint32_t preferred, uint32_t max);
void nbd_proto_put_simple_reply(uint8_t *p, uint32_t error, uint64_t handle);

/* The transmission flags of an export: what it allows and what the backend offers. */
uint16_t nbd_proto_tflags(const nbd_backend_ops_t *ops, bool read_only, bool multi_conn);

/* A negative errno as an NBD error value (0 stays 0). */
uint32_t nbd_proto_error(int status);

/* The option reply type for a failed open (see nbd_open_done). */
uint32_t nbd_proto_open_error(int status);

/* Names for log lines ("NBD_OPT_GO", "option 42"); static or rotating buffers. */
const char *nbd_proto_opt_name(uint32_t opt);
const char *nbd_proto_cmd_name(uint16_t type);

#endif
