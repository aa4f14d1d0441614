/* The handshake's options: GO, INFO, LIST, ABORT, EXPORT_NAME, and refusals. */
#include "nbd/server_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

typedef struct nbd_open_op {
    nbd_open_t pub;
    nbd_conn_t *conn;
    uint32_t opt;   /* the option that asked */
    bool want_name; /* NBD_INFO_NAME was requested */
    bool done;
    uint32_t name_len;
    char name[];
} nbd_open_op_t;

struct nbd_list {
    nbd_conn_t *conn;
    bool done;
};


/* ---- options ------------------------------------------------------------ */

static void conn_enter_transmission(nbd_conn_t *c, nbd_open_op_t *op, uint16_t tflags)
{
    c->have_export = true;
    c->export = op->pub.export;
    c->size = op->pub.size;
    c->tflags = tflags;
    c->state = NBD_ST_REQ_HDR;
    tm_debug("nbd: %s: serving '%s' (%llu bytes%s)", c->peer, op->name, (unsigned long long)op->pub.size,
             (tflags & NBD_FLAG_READ_ONLY) ? ", read-only" : "");
}

void nbd_open_done(nbd_open_t *pub, int status)
{
    nbd_open_op_t *op = nbd__container_of(pub, nbd_open_op_t, pub);
    nbd_conn_t *c = op->conn;
    nbd_server_t *srv = c->srv;
    if (op->done)
        abort(); /* a backend completing twice would corrupt the connection */
    op->done = true;
    c->backend_pending--;

    if (c->closing) {
        if (status == 0)
            srv->ops->release(pub->export);
        tm_free(op);
        nbd__conn_finish(c);
        return;
    }

    if (status < 0) {
        char msg[NBD_MAX_NAME + 1];
        if (pub->message != NULL)
            snprintf(msg, sizeof msg, "%s", pub->message);
        else if (status == -ENOENT)
            snprintf(msg, sizeof msg, "unknown export '%s'", op->name);
        else
            snprintf(msg, sizeof msg, "export '%s' is not available: %s", op->name, tm_strerror(status));
        if (op->opt == NBD_OPT_EXPORT_NAME) {
            /* That option has no error reply: proto.md wants the session ended. */
            tm_info("nbd: %s: %s; closing the connection", c->peer, msg);
            nbd__conn_close(c, false);
        } else {
            tm_info("nbd: %s: %s", c->peer, msg);
            nbd__conn_opt_reply(c, op->opt, nbd_proto_open_error(status), msg, strlen(msg));
            c->state = NBD_ST_OPT_HDR;
        }
        tm_free(op);
        nbd__conn_kick(c);
        return;
    }

    uint16_t tflags = nbd_proto_tflags(srv->ops, pub->read_only, pub->multi_conn);
    if (op->opt == NBD_OPT_EXPORT_NAME) {
        static const uint8_t zeroes[NBD_ZERO_PAD_LEN];
        uint8_t r[NBD_EXPORT_NAME_REPLY_LEN];
        nbd_proto_put_export_name_reply(r, pub->size, tflags);
        nbd__conn_send(c, r, sizeof r, zeroes, c->no_zeroes ? 0 : sizeof zeroes, NULL, 0);
        conn_enter_transmission(c, op, tflags);
    } else {
        uint8_t info[NBD_INFO_EXPORT_LEN];
        nbd_proto_put_info_export(info, pub->size, tflags);
        nbd__conn_opt_reply(c, op->opt, NBD_REP_INFO, info, sizeof info);
        /* Sent whether asked for or not (proto.md allows it): a client that
         * knows the maximum splits large transfers instead of failing. */
        uint8_t bs[NBD_INFO_BLOCK_SIZE_LEN];
        nbd_proto_put_info_block_size(bs, 1, NBD_PREFERRED_BLOCK, NBD_MAX_REQUEST);
        nbd__conn_opt_reply(c, op->opt, NBD_REP_INFO, bs, sizeof bs);
        if (op->want_name) {
            uint8_t hdr[NBD_OPT_REPLY_HDR_LEN], type[2];
            nbd_proto_put_opt_reply_hdr(hdr, op->opt, NBD_REP_INFO, 2 + op->name_len);
            tm_put_be16(type, NBD_INFO_NAME);
            nbd__conn_send(c, hdr, sizeof hdr, type, sizeof type, op->name, op->name_len);
        }
        nbd__conn_opt_reply(c, op->opt, NBD_REP_ACK, NULL, 0);
        if (op->opt == NBD_OPT_GO) {
            conn_enter_transmission(c, op, tflags);
        } else {
            srv->ops->release(pub->export);
            c->state = NBD_ST_OPT_HDR;
        }
    }
    tm_free(op);
    nbd__conn_kick(c);
}

static void conn_start_open(nbd_conn_t *c, uint32_t opt, const uint8_t *name, uint32_t name_len, bool want_name)
{
    nbd_open_op_t *op = tm_calloc(1, sizeof *op + name_len + 1);
    if (op == NULL) {
        tm_error("nbd: %s: out of memory for an open; closing the connection", c->peer);
        nbd__conn_close(c, false);
        return;
    }
    if (name_len)
        memcpy(op->name, name, name_len);
    op->name[name_len] = '\0';
    op->name_len = name_len;
    op->opt = opt;
    op->want_name = want_name;
    op->conn = c;
    op->pub.name = op->name;
    c->state = NBD_ST_OPT_WAIT;
    c->backend_pending++;
    c->srv->ops->open(c->srv->backend, &op->pub);
}

int nbd_list_add(nbd_list_t *op, const char *name, const char *description)
{
    nbd_conn_t *c = op->conn;
    size_t nlen = strlen(name), dlen = description ? strlen(description) : 0;
    if (nlen > NBD_MAX_NAME || dlen > NBD_MAX_NAME)
        return -EINVAL;
    if (c->closing)
        return 0;
    uint8_t hdr[NBD_OPT_REPLY_HDR_LEN + 4];
    nbd_proto_put_opt_reply_hdr(hdr, NBD_OPT_LIST, NBD_REP_SERVER, (uint32_t)(4 + nlen + dlen));
    tm_put_be32(hdr + NBD_OPT_REPLY_HDR_LEN, (uint32_t)nlen);
    nbd__conn_send(c, hdr, sizeof hdr, name, nlen, description, dlen);
    return 0;
}

void nbd_list_done(nbd_list_t *op, int status)
{
    nbd_conn_t *c = op->conn;
    if (op->done)
        abort();
    op->done = true;
    c->backend_pending--;
    tm_free(op);
    if (c->closing) {
        nbd__conn_finish(c);
        return;
    }
    if (status < 0)
        nbd__conn_opt_error(c, NBD_OPT_LIST, NBD_REP_ERR_POLICY, "cannot list exports: %s", tm_strerror(status));
    else
        nbd__conn_opt_reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
    c->state = NBD_ST_OPT_HDR;
    nbd__conn_kick(c);
}

static void conn_start_list(nbd_conn_t *c)
{
    nbd_list_t *op = tm_calloc(1, sizeof *op);
    if (op == NULL) {
        tm_error("nbd: %s: out of memory for a listing; closing the connection", c->peer);
        nbd__conn_close(c, false);
        return;
    }
    op->conn = c;
    c->state = NBD_ST_OPT_WAIT;
    c->backend_pending++;
    c->srv->ops->list(c->srv->backend, op);
}

/* A whole option is in c->opt / c->opt_data. */
void nbd__conn_option(nbd_conn_t *c)
{
    uint32_t opt = c->opt.opt, len = c->opt.len;
    const uint8_t *data = c->opt_data;
    const char *why = NULL;
    nbd_go_req_t go;

    c->state = NBD_ST_OPT_HDR;
    switch (opt) {
    case NBD_OPT_EXPORT_NAME:
        if (nbd_proto_check_name(data, len, &why) < 0)
            nbd__conn_log_drop(c, "NBD_OPT_EXPORT_NAME: %s", why);
        else
            conn_start_open(c, opt, data, len, false);
        break;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        if (nbd_proto_parse_go(data, len, &go, &why) < 0)
            nbd__conn_opt_error(c, opt, NBD_REP_ERR_INVALID, "%s: %s", nbd_proto_opt_name(opt), why);
        else
            conn_start_open(c, opt, go.name, go.name_len, nbd_proto_go_wants(&go, NBD_INFO_NAME));
        break;
    case NBD_OPT_LIST:
        if (len != 0)
            nbd__conn_opt_error(c, opt, NBD_REP_ERR_INVALID, "NBD_OPT_LIST carries no data");
        else if (c->srv->ops->list == NULL)
            nbd__conn_opt_error(c, opt, NBD_REP_ERR_POLICY, "this server does not list its exports");
        else
            conn_start_list(c);
        break;
    case NBD_OPT_ABORT:
        nbd__conn_opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
        c->state = NBD_ST_END;
        nbd__conn_close(c, true);
        break;
    default:
        /* Structured replies, meta contexts, TLS, extended headers and
         * anything newer: refused, and the client carries on without. */
        nbd__conn_opt_error(c, opt, NBD_REP_ERR_UNSUP, "%s (%u) is not supported", nbd_proto_opt_name(opt), opt);
        break;
    }
    tm_free(c->opt_data);
    c->opt_data = NULL;
}
