#include "msg_alloc.h"

#include <pthread.h>
#include <stdlib.h>

#include "atomic.h"

#define BLOCK_SIZE 128u
_Static_assert(sizeof(tr_msg) + 16 <= BLOCK_SIZE, "a block holds a header and 16 bytes");
#define MAX_FREE 4096u /* blocks a cache keeps; more go back to malloc */
#define BATCH 64u      /* blocks freed away from home travel in batches */
#define NRET 8u        /* homes a thread batches for at once */
#define ADOPT_MAX 64u  /* a thread keeps others' blocks while it has fewer free */

typedef struct tr__msg_cache tr__msg_cache;

typedef struct ret_batch {
    tr__msg_cache *home;
    tr_msg *head, *tail;
    uint32_t n;
} ret_batch;

struct tr__msg_cache {
    /* Owner only. */
    _Alignas(64) tr_msg *free_list;
    uint32_t nfree;
    ret_batch ret[NRET];
    tr__msg_cache *all_next; /* the global list; under all_lock */
    uint32_t orphan;         /* atomics: no thread owns it */
    /* Other threads push blocks home here (CAS); the owner takes all.
     * remote_n counts them (approximately: a pusher adds after its push). */
    _Alignas(64) tr_msg *remote;
    uint32_t remote_n;
};

/* initial-exec: the library is position independent, and the default
 * TLS model would call __tls_get_addr on every message. */
static _Thread_local __attribute__((tls_model("initial-exec"))) tr__msg_cache *mine;
static tr__msg_cache *all_caches;
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;

static void push_remote(tr__msg_cache *home, tr_msg *head, tr_msg *tail, uint32_t n)
{
    void *old = tr__load_acq_ptr((void **)&home->remote);
    do {
        tail->next = old;
    } while (!tr__cas_sc_ptr_value((void **)&home->remote, old, head, &old));
    tr__faa_sc_32(&home->remote_n, n);
}

static void free_chain(tr_msg *m)
{
    while (m != NULL) {
        tr_msg *next = m->next;
        free(m);
        m = next;
    }
}

void tr__msg_cache_attach(void)
{
    if (mine != NULL) {
        return;
    }
    pthread_mutex_lock(&all_lock);
    tr__msg_cache *c = all_caches;
    while (c != NULL && !tr__load_acq_32(&c->orphan)) {
        c = c->all_next;
    }
    if (c == NULL) {
        c = aligned_alloc(64, sizeof(*c));
        if (c != NULL) {
            *c = (tr__msg_cache){0};
            c->all_next = all_caches;
            all_caches = c;
        }
    } else {
        tr__store_rel_32(&c->orphan, 0);
    }
    pthread_mutex_unlock(&all_lock);
    mine = c; /* NULL (out of memory): this thread uses malloc */
}

static void flush_batch(ret_batch *r)
{
    if (r->n == 0) {
        return;
    }
    if (tr__load_acq_32(&r->home->orphan)) {
        free_chain(r->head);
    } else {
        push_remote(r->home, r->head, r->tail, r->n);
    }
    r->head = r->tail = NULL;
    r->n = 0;
    r->home = NULL;
}

void tr__msg_cache_flush(void)
{
    if (mine == NULL) {
        return;
    }
    for (unsigned i = 0; i < NRET; i++) {
        flush_batch(&mine->ret[i]);
    }
}

void tr__msg_cache_detach(void)
{
    tr__msg_cache *c = mine;
    if (c == NULL) {
        return;
    }
    tr__msg_cache_flush();
    mine = NULL;
    free_chain(c->free_list);
    c->free_list = NULL;
    c->nfree = 0;
    tr__store_rel_32(&c->orphan, 1);
    /* A push that checked `orphan` before we set it may still land: it
     * stays there, reachable, until a new thread adopts this cache. */
    free_chain(tr__fas_sc_ptr((void **)&c->remote, NULL));
}

tr_msg *tr__msg_alloc(size_t inline_len)
{
    tr__msg_cache *c = mine;
    if (c == NULL || inline_len > TR__MSG_SMALL) {
        if (inline_len > SIZE_MAX - sizeof(tr_msg)) {
            return NULL;
        }
        tr_msg *m = malloc(sizeof(tr_msg) + inline_len);
        if (m != NULL) {
            m->home_ = NULL;
        }
        return m;
    }
    tr_msg *m = c->free_list;
    if (m == NULL && tr__load_acq_ptr((void **)&c->remote) != NULL) {
        m = tr__fas_sc_ptr((void **)&c->remote, NULL);
        c->nfree = tr__fas_sc_32(&c->remote_n, 0); /* a heuristic: may lag */
    }
    if (m != NULL) {
        c->free_list = m->next;
        c->nfree -= c->nfree > 0;
    } else {
        m = malloc(BLOCK_SIZE);
        if (m == NULL) {
            return NULL;
        }
    }
    m->home_ = c;
    return m;
}

void tr__msg_release(tr_msg *m)
{
    tr__msg_cache *home = m->home_;
    if (home == NULL) {
        free(m);
        return;
    }
    tr__msg_cache *c = mine;
    if (home == c) {
        if (c->nfree >= MAX_FREE) {
            free(m);
            return;
        }
        m->next = c->free_list;
        c->free_list = m;
        c->nfree++;
        return;
    }
    if (c == NULL) {
        /* A foreign thread: one CAS, unless nobody is home. */
        if (tr__load_acq_32(&home->orphan)) {
            free(m);
        } else {
            push_remote(home, m, m, 1);
        }
        return;
    }
    if (c->nfree < ADOPT_MAX) {
        /* Keep it: the next message this thread sends reuses a block that
         * is still in its cache (a reply, say), as a thread cache of
         * malloc would. Only a surplus travels home. */
        m->home_ = c;
        m->next = c->free_list;
        c->free_list = m;
        c->nfree++;
        return;
    }
    ret_batch *r = &c->ret[((uintptr_t)home >> 6) % NRET];
    if (r->home != home) {
        flush_batch(r);
        r->home = home;
    }
    m->next = r->head;
    r->head = m;
    if (r->tail == NULL) {
        r->tail = m;
    }
    if (++r->n == BATCH) {
        flush_batch(r);
    }
}
