/*
 * The chunk cache (chunks.h): a hash of chunk numbers to lists, and a
 * doubly linked LRU order, under one mutex. A list is one allocation (its
 * extents follow it), counted: the cache holds one reference while it is
 * linked, each reader one while it reads through it.
 */
#include "target/chunks.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "base/mem.h"

/* What malloc adds to an allocation, roughly: counted so the cap bounds
 * real memory. */
#define TGT_CHUNKS_MALLOC_OVERHEAD 16u

struct tgt_chunks {
    pthread_mutex_t mu;
    size_t cap;
    size_t bytes;             /* of the linked lists, under mu */
    tgt_clist_t **buckets;
    uint64_t mask;            /* buckets - 1 */
    tgt_clist_t *head, *tail; /* most and least recently used, under mu */
    tgt_chunk_counters_t *cnt;
    tgt_chunk_counters_t own; /* when the caller gave none */
};

tgt_chunks_t *tgt_chunks_new(uint64_t size, size_t cap, tgt_chunk_counters_t *cnt)
{
    if (cap == 0)
        return NULL;
    tgt_chunks_t *c = tm_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    /* A bucket per chunk of the disk, but never more than one per 128
     * bytes of the cap: the array is at most cap / 16 bytes. */
    uint64_t chunks = (size >> PTS_CHUNK_SHIFT) + 1, most = cap / 128, n = 1;
    while (n < chunks && n * 2 <= most)
        n *= 2;
    c->buckets = tm_calloc((size_t)n, sizeof *c->buckets);
    if (!c->buckets) {
        tm_free(c);
        return NULL;
    }
    c->mask = n - 1;
    c->cap = cap;
    c->cnt = cnt ? cnt : &c->own;
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

static tgt_clist_t **tgt__bucket(tgt_chunks_t *c, uint64_t chunk)
{
    /* Fibonacci hashing: neighbouring chunks spread over the buckets */
    return &c->buckets[(chunk * 0x9e3779b97f4a7c15ull >> 20) & c->mask];
}

void tgt_clist_release(tgt_clist_t *l)
{
    if (l && atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        tm_free(l);
}

/* Take l out of the hash and the LRU order; the cache's reference is the
 * caller's to drop (outside the lock). Under mu. */
static void tgt__unlink(tgt_chunks_t *c, tgt_clist_t *l)
{
    for (tgt_clist_t **p = tgt__bucket(c, l->chunk); *p; p = &(*p)->hnext) {
        if (*p == l) {
            *p = l->hnext;
            break;
        }
    }
    if (l->prev)
        l->prev->next = l->next;
    else
        c->head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    else
        c->tail = l->prev;
    l->prev = l->next = l->hnext = NULL;
    l->linked = false;
    c->bytes -= l->bytes;
    atomic_fetch_sub_explicit(&c->cnt->entries, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&c->cnt->bytes, l->bytes, memory_order_relaxed);
}

void tgt_chunks_free(tgt_chunks_t *c)
{
    if (!c)
        return;
    while (c->head) {
        tgt_clist_t *l = c->head;
        tgt__unlink(c, l);
        tgt_clist_release(l);
    }
    pthread_mutex_destroy(&c->mu);
    tm_free(c->buckets);
    tm_free(c);
}

tgt_clist_t *tgt_chunks_get(tgt_chunks_t *c, uint64_t chunk)
{
    pthread_mutex_lock(&c->mu);
    tgt_clist_t *l = *tgt__bucket(c, chunk);
    while (l && l->chunk != chunk)
        l = l->hnext;
    if (l) {
        /* the cache's reference keeps it alive until this one is taken */
        atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
        if (l != c->head) {
            l->prev->next = l->next;
            if (l->next)
                l->next->prev = l->prev;
            else
                c->tail = l->prev;
            l->prev = NULL;
            l->next = c->head;
            c->head->prev = l;
            c->head = l;
        }
    }
    pthread_mutex_unlock(&c->mu);
    atomic_fetch_add_explicit(l ? &c->cnt->hits : &c->cnt->misses, 1, memory_order_relaxed);
    return l;
}

void tgt_chunks_add(tgt_chunks_t *c, uint64_t chunk, const pts_extent_t *e, uint32_t n)
{
    size_t bytes = sizeof(tgt_clist_t) + (size_t)n * sizeof *e + TGT_CHUNKS_MALLOC_OVERHEAD;
    if (bytes > c->cap)
        return;
    tgt_clist_t *l = tm_malloc(bytes - TGT_CHUNKS_MALLOC_OVERHEAD);
    if (!l)
        return;
    atomic_init(&l->refs, 1);
    l->n = n;
    l->chunk = chunk;
    l->bytes = bytes;
    l->hnext = l->prev = l->next = NULL;
    l->linked = true;
    if (n)
        memcpy(l->e, e, (size_t)n * sizeof *e);
    /* Lists let go for room, released once the lock is dropped. */
    tgt_clist_t *gone = NULL;
    uint64_t evicted = 0;
    pthread_mutex_lock(&c->mu);
    tgt_clist_t **b = tgt__bucket(c, chunk);
    tgt_clist_t *have = *b;
    while (have && have->chunk != chunk)
        have = have->hnext;
    if (have) {
        pthread_mutex_unlock(&c->mu);
        tm_free(l);
        return;
    }
    while (c->bytes + bytes > c->cap && c->tail) {
        tgt_clist_t *old = c->tail;
        tgt__unlink(c, old);
        old->hnext = gone; /* unlinked: the field is free to chain them */
        gone = old;
        evicted++;
    }
    l->hnext = *b;
    *b = l;
    l->next = c->head;
    if (c->head)
        c->head->prev = l;
    c->head = l;
    if (!c->tail)
        c->tail = l;
    c->bytes += bytes;
    atomic_fetch_add_explicit(&c->cnt->entries, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->cnt->bytes, bytes, memory_order_relaxed);
    pthread_mutex_unlock(&c->mu);
    if (evicted)
        atomic_fetch_add_explicit(&c->cnt->evictions, evicted, memory_order_relaxed);
    while (gone) {
        tgt_clist_t *next = gone->hnext;
        gone->hnext = NULL;
        tgt_clist_release(gone);
        gone = next;
    }
}

void tgt_chunks_forget(tgt_chunks_t *c, tgt_clist_t *l)
{
    pthread_mutex_lock(&c->mu);
    bool linked = l->linked;
    if (linked)
        tgt__unlink(c, l);
    pthread_mutex_unlock(&c->mu);
    if (linked) {
        atomic_fetch_add_explicit(&c->cnt->stale, 1, memory_order_relaxed);
        tgt_clist_release(l); /* the cache's; the caller still holds one */
    }
}
