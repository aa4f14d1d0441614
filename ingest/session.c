/*
 * What the frames of a session mean: HELLO -> CHALLENGE -> AUTH -> WELCOME
 * -> RECORDS..., the checks on each batch before it is journaled, and what
 * a journal completion does (durable sequence, ACK, window).
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "ingest/ingest_int.h"
#include "ingest/record.h"

#define IG_AUTH_LABEL "tidemark-auth-v1"

/* ---- journal appends ---------------------------------------------------- */

/* The journal's writer thread: only the queue and the async handle. The
 * send happens under the lock so the loop cannot see the queue drained and
 * close the handle between our push and our send. */
static void ig__jnl_cb(jnl_append_req_t *req, int status)
{
    ig_append_t *a = (ig_append_t *)req;
    ingest_t *ig = req->data;
    a->status = status;
    a->next = NULL;
    pthread_mutex_lock(&ig->mu);
    if (ig->done_tail)
        ig->done_tail->next = a;
    else
        ig->done_head = a;
    ig->done_tail = a;
    uv_async_send(&ig->async);
    pthread_mutex_unlock(&ig->mu);
}

static int ig__append(ig_conn_t *c, uint8_t type, const jnl_buf_t *bufs, unsigned nbufs, uint64_t last_seq,
                      uint32_t raw_len, uint64_t synced, uint64_t resync_open, uint64_t resync_close)
{
    ingest_t *ig = c->ig;
    ig_append_t *a = tm_calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    uint32_t bytes = 0;
    for (unsigned i = 0; i < nbufs; i++)
        bytes += (uint32_t)bufs[i].len;
    a->req.data = ig;
    a->m = c->m;
    a->conn_gen = c->gen;
    a->last_seq = last_seq;
    a->raw_len = raw_len;
    a->bytes = bytes;
    a->synced = synced;
    a->resync_open = resync_open;
    a->resync_close = resync_close;
    int rc = jnl_append(ig->jnl, &a->req, type, bufs, nbufs, 0, ig__jnl_cb);
    if (rc) {
        tm_free(a);
        return rc;
    }
    c->m->inflight++;
    ig_budget_add(ig, bytes);
    return 0;
}

void ig_conn_append_done(ig_append_t *a)
{
    ingest_t *ig = a->req.data;
    ig_machine_t *m = a->m;
    ig_conn_t *live = (m->conn && m->conn->gen == a->conn_gen) ? m->conn : NULL;

    if (a->status == 0) {
        if (a->last_seq > m->durable_seq) {
            m->durable_seq = a->last_seq;
            if (!m->ack_due) {
                m->ack_due = true;
                m->ack_next = ig->ack_list;
                ig->ack_list = m;
            }
        }
        if (live)
            live->unacked_raw -= a->raw_len < live->unacked_raw ? a->raw_len : live->unacked_raw;
        /* A disk counts as copied only once its SYNCED record is durable,
         * like an ACK: the WELCOME and the operator never see more. */
        if (a->synced)
            ig_machine_synced(m, a->synced);
        if (a->resync_open || a->resync_close)
            ig_machine_resync(m, a->resync_open, a->resync_close);
        return;
    }
    tm_error("ingest: machine %s: the journal could not keep %s (LSN %" PRIu64 "): %s", m->name,
             a->last_seq ? "a batch" : "its disks record", a->req.lsn, tm_strerror(a->status));
    if (a->last_seq == 0)
        ig_machine_set_disks(m, NULL, 0); /* the next hello writes it again */
    /* Whatever the agent sent after the lost batch is refused too: it
     * resumes from what is durable. */
    m->next_seq = m->durable_seq + 1;
    if (live)
        ig_conn_fail(live, WIRE_E_INTERNAL, "the journal could not keep the data: %s", tm_strerror(a->status));
}

/* ---- handshake ------------------------------------------------------------ */

static void ig__welcome(ig_conn_t *c)
{
    ingest_t *ig = c->ig;
    ig_machine_t *m = c->m;
    char who[160];
    wire_buf_t b = {0};
    m->next_seq = m->durable_seq + 1;
    wire_welcome_t w = {
        .next_seq = m->next_seq,
        .window_bytes = ig->window,
        .max_batch_data = ig->window < WIRE_MAX_BATCH_DATA ? ig->window : WIRE_MAX_BATCH_DATA,
        .ndisks = m->ndisks,
    };
    /* Every append settled before WELCOME, so these are the durable flags. */
    for (unsigned d = 0; d < m->ndisks; d++)
        w.disk_state[d] = (m->synced >> d) & 1 ? WIRE_DISK_SYNCED : WIRE_DISK_NEW;
    if (wire_enc_welcome(&b, &w) != 0 || ig_conn_send(c, &b) != 0) {
        wire_buf_free(&b);
        ig_conn_fail(c, WIRE_E_INTERNAL, "cannot send WELCOME");
        return;
    }
    wire_buf_free(&b);
    tm_info("ingest: %s streams from sequence %" PRIu64, ig_conn_who(c, who, sizeof who), m->next_seq);
    tm_free(c->hello);
    c->hello = NULL;
    c->state = IG_ST_STREAM;
    c->deadline_ns = 0;
    c->unacked_raw = 0;
    ig_conn_update_reading(c);
    /* A STOP or RESUME the appliance asked for goes to every new session. */
    ig_control_welcomed(c);
}

void ig_conn_settled(ig_machine_t *m)
{
    /* A retired machine's session goes once what it sent is durable. */
    if (m->retired)
        ig_control_retire_conn(m);
    else if (m->conn && m->conn->state == IG_ST_WAIT)
        ig__welcome(m->conn);
}

const ingest_reg_entry_t *ig_registry_lookup(ingest_t *ig, const char *name)
{
    const ingest_reg_entry_t *e = ingest_registry_find(&ig->reg, name);
    if (e || !ingest_registry_changed(ig->data_dir, &ig->reg))
        return e;
    char err[512];
    int rc = ingest_registry_load(ig->data_dir, &ig->reg, err, sizeof err);
    if (rc) {
        tm_warn("ingest: machine registry: %s", err);
        ig->reg_bad = true;
        return NULL;
    }
    if (ig->reg_bad)
        tm_info("ingest: machine registry read again: %zu machine%s", ig->reg.n, ig->reg.n == 1 ? "" : "s");
    ig->reg_bad = false;
    return ingest_registry_find(&ig->reg, name);
}

bool ingest_machine_known(ingest_t *ig, const char *name)
{
    ingest_machine_info_t mi;
    return ingest_machine_state(ig, name, &mi) == 0 || ig_registry_lookup(ig, name) != NULL;
}

static void ig__on_hello(ig_conn_t *c)
{
    ingest_t *ig = c->ig;
    char reason[160];
    wire_buf_t b = {0};

    c->hello = tm_malloc(sizeof *c->hello);
    if (!c->hello) {
        ig_conn_fail(c, WIRE_E_INTERNAL, "out of memory");
        return;
    }
    int rc = wire_dec_hello(c->dec.body, c->dec.hdr.body_len, c->hello, reason, sizeof reason);
    if (rc) {
        tm_free(c->hello);
        c->hello = NULL;
        ig_conn_fail(c, rc, "%s", reason);
        return;
    }
    const ingest_reg_entry_t *e = ig_registry_lookup(ig, c->hello->machine);
    /* An unknown machine is told no more than a wrong secret would be. */
    c->known = e != NULL;
    if (e)
        memcpy(c->secret, e->secret, sizeof c->secret);
    wire_challenge_t ch;
    memset(&ch, 0, sizeof ch);
    snprintf(ch.server_id, sizeof ch.server_id, "%s", ig->server_id);
    rc = tm_random_bytes(c->nonce, sizeof c->nonce);
    if (rc) {
        ig_conn_fail(c, WIRE_E_INTERNAL, "no random bytes: %s", tm_strerror(rc));
        return;
    }
    memcpy(ch.nonce, c->nonce, sizeof ch.nonce);
    if (wire_enc_challenge(&b, &ch) != 0 || ig_conn_send(c, &b) != 0) {
        wire_buf_free(&b);
        ig_conn_fail(c, WIRE_E_INTERNAL, "cannot send CHALLENGE");
        return;
    }
    wire_buf_free(&b);
    c->state = IG_ST_AUTH;
}

/* The MAC an agent holding secret must send. */
static void ig__expected_mac(const ig_conn_t *c, uint8_t out[WIRE_MAC_LEN])
{
    uint8_t msg[sizeof IG_AUTH_LABEL - 1 + WIRE_NONCE_LEN + WIRE_MAX_NAME];
    size_t n = 0, mlen = strlen(c->hello->machine);
    memcpy(msg, IG_AUTH_LABEL, sizeof IG_AUTH_LABEL - 1);
    n += sizeof IG_AUTH_LABEL - 1;
    memcpy(msg + n, c->nonce, WIRE_NONCE_LEN);
    n += WIRE_NONCE_LEN;
    memcpy(msg + n, c->hello->machine, mlen);
    n += mlen;
    unsigned int outlen = WIRE_MAC_LEN;
    if (!HMAC(EVP_sha256(), c->secret, (int)sizeof c->secret, msg, n, out, &outlen))
        memset(out, 0, WIRE_MAC_LEN); /* cannot match a real MAC by chance; the check fails */
}

/* 0 when the hello's disks are the registered ones, else a reason. */
static int ig__disks_differ(const ig_machine_t *m, const wire_hello_t *h, char *why, size_t wlen)
{
    if (m->ndisks != h->ndisks) {
        snprintf(why, wlen, "machine %s has %u disk%s registered; the agent names %u", m->name, m->ndisks,
                 m->ndisks == 1 ? "" : "s", h->ndisks);
        return 1;
    }
    for (unsigned i = 0; i < m->ndisks; i++) {
        if (strcmp(m->disks[i].name, h->disks[i].name) != 0 || m->disks[i].size != h->disks[i].size) {
            snprintf(why, wlen, "disk %u is %s of %" PRIu64 " bytes here; the agent says %s of %" PRIu64 " bytes", i,
                     m->disks[i].name, m->disks[i].size, h->disks[i].name, h->disks[i].size);
            return 1;
        }
    }
    return 0;
}

static void ig__on_auth(ig_conn_t *c)
{
    ingest_t *ig = c->ig;
    char reason[200];
    uint8_t mac[WIRE_MAC_LEN], want[WIRE_MAC_LEN];

    int rc = wire_dec_auth(c->dec.body, c->dec.hdr.body_len, mac, reason, sizeof reason);
    if (rc) {
        ig_conn_fail(c, rc, "%s", reason);
        return;
    }
    ig__expected_mac(c, want);
    bool ok = c->known && CRYPTO_memcmp(mac, want, WIRE_MAC_LEN) == 0;
    OPENSSL_cleanse(c->secret, sizeof c->secret);
    if (!ok) {
        ig_conn_fail(c, WIRE_E_AUTH, "unknown machine or wrong secret");
        return;
    }
    /* Only after authentication: nobody learns which names are retired
     * without the machine's secret. Before the machine's table entry, so
     * that nothing of it (not even a disks record) reaches the journal. */
    const ig_retired_t *rt = ig_retired_find(ig, c->hello->machine);
    if (rt) {
        ig_conn_fail(c, WIRE_E_STOPPED, "%s", rt->reason);
        return;
    }
    ig_machine_t *m = ig_machine_get(ig, c->hello->machine);
    if (!m) {
        ig_conn_fail(c, WIRE_E_INTERNAL, "out of memory");
        return;
    }
    if (m->disks && ig__disks_differ(m, c->hello, reason, sizeof reason)) {
        ig_conn_fail(c, WIRE_E_DISKS, "%s", reason);
        return;
    }
    if (m->conn) {
        /* Only the machine's secret opens a session, so the old one is most
         * likely this same agent's connection that died without a FIN (a
         * reboot, a dropped NAT entry): keepalive would hold the machine
         * for minutes. The new one takes over; it is welcomed once the old
         * one's appends completed, like any session. */
        ig_conn_fail(m->conn, WIRE_E_BUSY, "replaced by a new session from %s", c->peer);
    }
    c->m = m;
    m->conn = c;
    if (!m->disks) {
        uint8_t *rec = tm_malloc(INGEST_DISKS_MAX);
        rc = rec ? ig_machine_set_disks(m, c->hello->disks, c->hello->ndisks) : -ENOMEM;
        if (rc == 0) {
            jnl_buf_t buf = {rec, ingest_rec_disks_encode(rec, m->name, m->disks, m->ndisks)};
            rc = ig__append(c, INGEST_REC_DISKS, &buf, 1, 0, 0, 0, 0, 0);
            if (rc)
                ig_machine_set_disks(m, NULL, 0);
        }
        tm_free(rec);
        if (rc) {
            ig_conn_fail(c, WIRE_E_INTERNAL, "the journal refused the machine's disks record: %s",
                         tm_strerror(rc));
            return;
        }
    }
    c->state = IG_ST_WAIT;
    c->deadline_ns = 0;
    /* Appends of an earlier session (or the disks record just made) settle
     * first, so that WELCOME names the exact next sequence. */
    if (m->inflight == 0)
        ig__welcome(c);
}

/* ---- records -------------------------------------------------------------- */

static void ig__on_records(ig_conn_t *c)
{
    ingest_t *ig = c->ig;
    ig_machine_t *m = c->m;
    wire_records_t *r = ig->recs;
    char reason[200];

    if (!ig->scratch) {
        ig->scratch = tm_malloc(WIRE_MAX_BATCH_DATA);
        if (!ig->scratch) {
            ig_conn_fail(c, WIRE_E_INTERNAL, "out of memory");
            return;
        }
    }
    int rc = wire_dec_records(c->dec.body, c->dec.hdr.body_len, r, ig->scratch, reason, sizeof reason);
    if (rc) {
        ig_conn_fail(c, rc, "%s", reason);
        return;
    }
    if (r->first_seq != m->next_seq) {
        ig_conn_fail(c, WIRE_E_SEQUENCE, "records start at sequence %" PRIu64 "; the server expects %" PRIu64,
                     r->first_seq, m->next_seq);
        return;
    }
    uint64_t synced = 0, ropen = 0, rclose = 0;
    for (unsigned i = 0; i < r->count; i++) {
        const wire_entry_t *e = &r->entries[i];
        if (e->kind == WIRE_R_SYNCED || e->kind == WIRE_R_RESYNC) {
            if (e->disk >= m->ndisks) {
                ig_conn_fail(c, WIRE_E_RANGE, "record %u (sequence %" PRIu64 "): %s for disk %u, but the machine has %u",
                             i, r->first_seq + i, e->kind == WIRE_R_SYNCED ? "synced" : "resync", e->disk,
                             m->ndisks);
                return;
            }
            uint64_t bit = UINT64_C(1) << e->disk;
            /* in stream order, like ingest_rec_batch_resync at start */
            if (e->kind == WIRE_R_SYNCED) {
                synced |= bit;
                rclose |= bit;
                ropen &= ~bit;
            } else {
                ropen |= bit;
                rclose &= ~bit;
            }
            continue;
        }
        if (e->kind != WIRE_R_WRITE && e->kind != WIRE_R_ZERO && e->kind != WIRE_R_TRIM)
            continue;
        if (e->disk >= m->ndisks) {
            ig_conn_fail(c, WIRE_E_RANGE, "record %u (sequence %" PRIu64 "): disk %u, but the machine has %u", i,
                         r->first_seq + i, e->disk, m->ndisks);
            return;
        }
        const wire_disk_t *d = &m->disks[e->disk];
        /* wire_dec_records made sure offset + length does not wrap */
        if (e->offset + e->length > d->size) {
            ig_conn_fail(c, WIRE_E_RANGE,
                         "record %u (sequence %" PRIu64 "): %u bytes at %" PRIu64 " run past the end of disk %s (%" PRIu64
                         " bytes)",
                         i, r->first_seq + i, e->length, e->offset, d->name, d->size);
            return;
        }
    }
    if (c->unacked_raw + r->raw_len > ig->window) {
        ig_conn_fail(c, WIRE_E_PROTOCOL,
                     "%" PRIu64 " bytes unacknowledged with this batch, over the window of %u the server gave",
                     c->unacked_raw + r->raw_len, ig->window);
        return;
    }
    uint8_t hdr[INGEST_BATCH_HDR_MAX];
    jnl_buf_t bufs[2] = {
        {hdr, ingest_rec_batch_header(hdr, tm_now_ns(), m->name)},
        {c->dec.body, c->dec.hdr.body_len},
    };
    uint64_t last = r->first_seq + r->count - 1;
    rc = ig__append(c, INGEST_REC_BATCH, bufs, 2, last, r->raw_len, synced, ropen, rclose);
    if (rc) {
        /* TM_EFAILED alone does not say what is wrong: name the failure
         * the journal is still in (it may have recovered meanwhile). */
        jnl_stats_t st = {0};
        if (rc == TM_EFAILED)
            jnl_get_stats(ig->jnl, &st);
        ig_conn_fail(c, WIRE_E_INTERNAL, "the journal refused the batch: %s%s%s%s", tm_strerror(rc),
                     st.error ? " (" : "", st.error ? tm_strerror(st.error) : "", st.error ? ")" : "");
        return;
    }
    m->next_seq = last + 1;
    c->unacked_raw += r->raw_len;
}

/* ---- dispatch ------------------------------------------------------------- */

void ig_conn_frame(ig_conn_t *c)
{
    uint16_t type = c->dec.hdr.type;
    char who[160];

    if (type == WIRE_T_ERROR) {
        wire_error_t e;
        char reason[160];
        if (wire_dec_error(c->dec.body, c->dec.hdr.body_len, &e, reason, sizeof reason) == 0)
            tm_warn("ingest: %s reports %s: %s", ig_conn_who(c, who, sizeof who), wire_err_name(e.code), e.text);
        else
            tm_warn("ingest: %s sent a bad ERROR frame: %s", ig_conn_who(c, who, sizeof who), reason);
        ig_conn_close(c);
        return;
    }
    if (type & 0x80) {
        ig_conn_fail(c, WIRE_E_PROTOCOL, "frame type 0x%x goes from the server to agents", type);
        return;
    }
    switch (c->state) {
    case IG_ST_HELLO:
        if (type != WIRE_T_HELLO)
            break;
        ig__on_hello(c);
        return;
    case IG_ST_AUTH:
        if (type != WIRE_T_AUTH)
            break;
        ig__on_auth(c);
        return;
    case IG_ST_STREAM:
        /* Retired: it is closed once what it sent before is durable;
         * nothing it sends from now on is kept or answered. */
        if (c->m && c->m->retired)
            return;
        if (type == WIRE_T_RECORDS)
            ig__on_records(c);
        else if (type == WIRE_T_RESYNC_REQUEST)
            ig_resync_request(c);
        else if (type == WIRE_T_RESYNC_ACK)
            ig_resync_ack(c);
        else if (type == WIRE_T_PREPARED)
            ig_group_prepared(c);
        else
            break;
        return;
    case IG_ST_WAIT:
        ig_conn_fail(c, WIRE_E_PROTOCOL, "frame type 0x%x before WELCOME", type);
        return;
    case IG_ST_LINGER:
    case IG_ST_CLOSED:
        return;
    }
    static const char *const want[] = {"HELLO", "AUTH", "", "RECORDS, RESYNC_REQUEST, RESYNC_ACK or PREPARED"};
    ig_conn_fail(c, WIRE_E_PROTOCOL, "expected %s, got frame type 0x%x", want[c->state], type);
}
