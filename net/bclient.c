/* The blocking client: the event-driven client's callbacks (on the
 * connection's worker) fill a small state under a mutex; the caller's
 * thread waits on a condition variable. The state outlives every callback:
 * the last one is on_close (or on_dial with an error, for a connection
 * that never opened), and tr_bclient_close frees only after seeing it. */
#include "troupe/bclient.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "troupe/client.h"
#include "troupe/conn.h"
#include "../runtime/util.h"

#define MAX_HELD_BYTES (4u << 20)

typedef struct frame {
    struct frame *next;
    tr_buf *buf;
} frame;

struct tr_bclient {
    tr_runtime *rt;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tr_conn_id id;
    tr_handler handler;
    bool opened, done;       /* done: closed, or the dial failed */
    int reason;
    frame *head, *tail;      /* frames received, not read yet */
    size_t held;
};

/* Waits on cv until pred holds or the deadline passes (under mu). */
static bool wait_until(tr_bclient *b, bool (*pred)(const tr_bclient *), const struct timespec *dl)
{
    while (!pred(b)) {
        if (pthread_cond_timedwait(&b->cv, &b->mu, dl) == ETIMEDOUT) {
            return pred(b);
        }
    }
    return true;
}

static bool open_or_done(const tr_bclient *b)
{
    return b->opened || b->done;
}

static bool frame_or_done(const tr_bclient *b)
{
    return b->head != NULL || b->done;
}

static bool is_done(const tr_bclient *b)
{
    return b->done;
}

/* ---- callbacks, on the connection's worker ---- */

static void on_dial(tr_conn_id id, int err, void *user)
{
    (void)id;
    tr_bclient *b = user;
    if (err == 0) {
        return; /* on_open follows */
    }
    pthread_mutex_lock(&b->mu);
    b->done = true;
    b->reason = err;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static int on_open(tr_conn *c, void *user)
{
    (void)c;
    tr_bclient *b = user;
    pthread_mutex_lock(&b->mu);
    b->opened = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

static int on_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)c;
    tr_bclient *b = user;
    frame *f = malloc(sizeof(*f));
    tr_buf *buf = tr_buf_copy(data, len);
    if (f == NULL || buf == NULL) {
        free(f);
        tr_buf_release(buf);
        return TR_ENOMEM; /* an error: the policy closes the connection */
    }
    f->next = NULL;
    f->buf = buf;
    pthread_mutex_lock(&b->mu);
    bool over = b->held + len > MAX_HELD_BYTES;
    if (!over) {
        if (b->tail != NULL) {
            b->tail->next = f;
        } else {
            b->head = f;
        }
        b->tail = f;
        b->held += len;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    if (over) {
        tr_buf_release(buf);
        free(f);
        return -ENOBUFS; /* the reader is too far behind */
    }
    return 0;
}

static void on_close(tr_conn *c, int reason, void *user)
{
    (void)c;
    tr_bclient *b = user;
    pthread_mutex_lock(&b->mu);
    b->done = true;
    b->opened = false;
    b->reason = reason;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* ---- the caller's side ---- */

static void free_client(tr_bclient *b)
{
    while (b->head != NULL) {
        frame *f = b->head;
        b->head = f->next;
        tr_buf_release(f->buf);
        free(f);
    }
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

tr_bclient *tr_bclient_connect(tr_runtime *rt, const char *addr, const tr_codec *codec,
                               size_t max_frame, uint32_t timeout_ms, int *err)
{
    if (tr_runtime_on_worker(rt)) {
        *err = TR_EDEADLK;
        return NULL;
    }
    tr_bclient *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        *err = TR_ENOMEM;
        return NULL;
    }
    b->rt = rt;
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    b->handler = (tr_handler){.on_open = on_open, .on_frame = on_frame, .on_close = on_close};
    tr_client_config cfg;
    tr_client_config_defaults(&cfg);
    cfg.connect = addr;
    cfg.conn.codec = codec;
    cfg.conn.handler = &b->handler;
    cfg.conn.user = b;
    cfg.on_dial = on_dial;
    cfg.connect_timeout_ms = timeout_ms;
    cfg.resolve_timeout_ms = timeout_ms > 0 ? timeout_ms : 1; /* the wait below bounds both */
    if (max_frame != 0) {
        cfg.conn.max_frame_bytes = max_frame;
    }
    int rc = tr_client_connect(rt, &cfg, &b->id);
    if (rc < 0) {
        free_client(b);
        *err = rc;
        return NULL;
    }
    struct timespec dl;
    tr__timespec_after_ms(&dl, timeout_ms);
    pthread_mutex_lock(&b->mu);
    bool ready = wait_until(b, open_or_done, &dl);
    bool opened = b->opened;
    rc = b->done ? b->reason : TR_ETIMEDOUT;
    pthread_mutex_unlock(&b->mu);
    if (ready && opened) {
        *err = 0;
        return b;
    }
    /* Failed or timed out: make sure no callback runs any more, then free. */
    tr_conn_abort_id(b->id);
    tr__timespec_after_ms(&dl, 5000);
    pthread_mutex_lock(&b->mu);
    bool gone = wait_until(b, is_done, &dl) || tr_conn_id_is_closed(b->id);
    pthread_mutex_unlock(&b->mu);
    if (gone) {
        free_client(b); /* else leak it: a callback might still come */
    }
    *err = rc < 0 ? rc : TR_ETIMEDOUT;
    return NULL;
}

int tr_bclient_write(tr_bclient *b, const void *data, size_t len, uint32_t timeout_ms)
{
    return tr_conn_send_wait(b->id, data, len, timeout_ms);
}

int tr_bclient_read(tr_bclient *b, tr_buf **frame_out, uint32_t timeout_ms)
{
    *frame_out = NULL;
    if (tr_runtime_on_worker(b->rt)) {
        return TR_EDEADLK;
    }
    struct timespec dl;
    tr__timespec_after_ms(&dl, timeout_ms);
    pthread_mutex_lock(&b->mu);
    wait_until(b, frame_or_done, &dl);
    int rc;
    if (b->head != NULL) {
        frame *f = b->head;
        b->head = f->next;
        if (b->head == NULL) {
            b->tail = NULL;
        }
        b->held -= tr_buf_len(f->buf);
        *frame_out = f->buf;
        free(f);
        rc = 0;
    } else {
        rc = b->done ? TR_ECLOSED : TR_ETIMEDOUT;
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

int tr_bclient_once(tr_bclient *b, const void *data, size_t len, tr_buf **reply,
                    uint32_t timeout_ms)
{
    uint64_t deadline = tr__now_ms() + timeout_ms;
    int rc = tr_bclient_write(b, data, len, timeout_ms);
    if (rc < 0) {
        *reply = NULL;
        return rc;
    }
    uint64_t now = tr__now_ms();
    return tr_bclient_read(b, reply, now >= deadline ? 0 : (uint32_t)(deadline - now));
}

bool tr_bclient_is_connected(tr_bclient *b)
{
    pthread_mutex_lock(&b->mu);
    bool open = b->opened && !b->done;
    pthread_mutex_unlock(&b->mu);
    return open;
}

int tr_bclient_close_reason(tr_bclient *b)
{
    pthread_mutex_lock(&b->mu);
    int r = b->done ? b->reason : 0;
    pthread_mutex_unlock(&b->mu);
    return r;
}

void tr_bclient_close(tr_bclient *b)
{
    if (b == NULL || tr_runtime_on_worker(b->rt)) {
        return; /* on a worker it would wait for its own thread */
    }
    tr_conn_close_id(b->id);
    struct timespec dl;
    tr__timespec_after_ms(&dl, 5000);
    pthread_mutex_lock(&b->mu);
    bool gone = wait_until(b, is_done, &dl);
    pthread_mutex_unlock(&b->mu);
    if (!gone) {
        /* The peer never closed its side: cut it off. */
        tr_conn_abort_id(b->id);
        tr__timespec_after_ms(&dl, 5000);
        pthread_mutex_lock(&b->mu);
        gone = wait_until(b, is_done, &dl);
        pthread_mutex_unlock(&b->mu);
    }
    if (gone) {
        free_client(b); /* else leak it: a callback might still come */
    }
}
