/* Test helpers for the runtime tests: runtimes, an ordered event log
 * shared between worker threads and the test thread, and waits.
 *
 * Header-only (static inline), because the support library compiles
 * wait.c alone. Callbacks run on worker threads, where a Criterion assert
 * cannot stop the test: they record what they saw, and the test thread
 * asserts after waiting. Every wait is bounded polling (wait.h). */
#ifndef TROUPE_TEST_RT_H
#define TROUPE_TEST_RT_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "troupe/troupe.h"
#include "tsan_criterion.h"
#include "wait.h"

/* A runtime with `workers` threads (0: one per CPU), started or not. */
static inline tr_runtime *tr_test_runtime_ex(unsigned workers, unsigned batch, bool start)
{
    tr_runtime_config cfg;
    tr_runtime_config_defaults(&cfg);
    cfg.workers = workers;
    if (batch != 0) {
        cfg.batch = batch;
    }
    int err = 1;
    tr_runtime *rt = tr_runtime_new(&cfg, &err);
    cr_assert_not_null(rt, "tr_runtime_new: %s", tr_strerror(err));
    cr_assert_eq(err, 0);
    if (start) {
        cr_assert_eq(tr_runtime_start(rt), 0);
    }
    return rt;
}

static inline tr_runtime *tr_test_runtime(unsigned workers)
{
    return tr_test_runtime_ex(workers, 0, true);
}

typedef struct tr_test_count_arg {
    const tr_runtime *rt;
    uint64_t want;
} tr_test_count_arg;

static inline bool tr_test_count_is(void *arg)
{
    tr_test_count_arg *c = arg;
    return tr_runtime_actor_count(c->rt) == c->want;
}

/* Waits until the runtime's live actor count is exactly `want`. */
static inline bool tr_test_wait_actor_count(const tr_runtime *rt, uint64_t want,
                                            uint32_t timeout_ms)
{
    tr_test_count_arg c = {rt, want};
    return tr_test_wait_until(tr_test_count_is, &c, timeout_ms);
}

/* Graceful end of a test: every actor must leave within 5 s, then free. */
static inline void tr_test_runtime_finish(tr_runtime *rt)
{
    cr_assert_eq(tr_runtime_shutdown(rt, 5000), 0, "graceful shutdown timed out");
    cr_assert_eq(tr_runtime_actor_count(rt), 0);
    tr_runtime_free(rt);
}

/* An ordered log of events from any thread. */
#define TR_TEST_LOG_MAX 4096

typedef struct tr_test_event {
    int32_t kind;
    int32_t who;
    int64_t val;
} tr_test_event;

typedef struct tr_test_log {
    pthread_mutex_t lock;
    uint64_t n; /* atomics (tr_test_load) for waiting; written under lock */
    tr_test_event ev[TR_TEST_LOG_MAX];
} tr_test_log;

static inline void tr_test_log_init(tr_test_log *log)
{
    memset(log, 0, sizeof(*log));
    pthread_mutex_init(&log->lock, NULL);
}

static inline void tr_test_log_add(tr_test_log *log, int32_t kind, int32_t who, int64_t val)
{
    pthread_mutex_lock(&log->lock);
    uint64_t n = tr_test_load(&log->n);
    if (n < TR_TEST_LOG_MAX) {
        log->ev[n] = (tr_test_event){kind, who, val};
        tr_test_store(&log->n, n + 1);
    }
    pthread_mutex_unlock(&log->lock);
}

/* Copies the events so far into out (up to max); returns how many. */
static inline size_t tr_test_log_get(tr_test_log *log, tr_test_event *out, size_t max)
{
    pthread_mutex_lock(&log->lock);
    size_t n = (size_t)tr_test_load(&log->n);
    if (n > max) {
        n = max;
    }
    memcpy(out, log->ev, n * sizeof(*out));
    pthread_mutex_unlock(&log->lock);
    return n;
}

/* Events of `kind` in order: their `who` into out, their count returned. */
static inline size_t tr_test_log_select(tr_test_log *log, int32_t kind, int32_t *who_out,
                                        int64_t *val_out, size_t max)
{
    pthread_mutex_lock(&log->lock);
    size_t n = (size_t)tr_test_load(&log->n), k = 0;
    for (size_t i = 0; i < n && k < max; i++) {
        if (log->ev[i].kind == kind) {
            if (who_out != NULL) {
                who_out[k] = log->ev[i].who;
            }
            if (val_out != NULL) {
                val_out[k] = log->ev[i].val;
            }
            k++;
        }
    }
    pthread_mutex_unlock(&log->lock);
    return k;
}

static inline void tr_test_log_fini(tr_test_log *log)
{
    pthread_mutex_destroy(&log->lock);
}

/* ---- a watcher: monitors one actor and records its DOWN ---- */

typedef struct tr_test_watch {
    tr_actor_id target;
    int monitor_rc; /* written before `ready` */
    uint64_t ref;   /* likewise */
    uint64_t ready; /* atomics: the monitor is in place */
    uint64_t downs; /* atomics: DOWNs seen; the fields below are set first */
    int64_t reason;
    uint64_t from;
    uint64_t down_ref;
} tr_test_watch;

static inline int tr_test__watch_init(tr_actor *self, void *arg)
{
    tr_test_watch *w = arg;
    tr_actor_set_state(self, w);
    w->monitor_rc = tr_monitor(self, w->target, &w->ref);
    tr_test_store(&w->ready, 1);
    return 0;
}

static inline void tr_test__watch_receive(tr_actor *self, tr_msg *m)
{
    tr_test_watch *w = tr_actor_state(self);
    if (tr_msg_type(m) == TR_MSG_DOWN && tr_actor_id_eq(tr_msg_from(m), w->target)) {
        w->reason = tr_msg_reason(m);
        w->from = tr_msg_from(m).bits;
        w->down_ref = tr_msg_ref(m);
        tr_test_add(&w->downs, 1);
    }
}

static inline const tr_behavior *tr_test_watcher(void)
{
    static const tr_behavior b = {
        .name = "watcher", .init = tr_test__watch_init, .receive = tr_test__watch_receive};
    return &b;
}

/* Spawns a watcher of `target` and waits until its monitor is in place:
 * from then on the target's exit reason reaches w, even if it has already
 * exited (TR_EXIT_NOPROC). */
static inline void tr_test_watch_start(tr_runtime *rt, tr_test_watch *w, tr_actor_id target)
{
    memset(w, 0, sizeof(*w));
    w->target = target;
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, tr_test_watcher(), w, NULL, &id), 0);
    cr_assert(tr_test_wait_ge(&w->ready, 1, 10000), "watcher did not start");
    cr_assert_eq(w->monitor_rc, 0);
}

/* ---- waiting on a runtime timer instead of sleeping ---- */

typedef struct tr_test__alarm {
    uint32_t ms;
    uint64_t rang;
} tr_test__alarm;

static inline int tr_test__alarm_init(tr_actor *self, void *arg)
{
    tr_test__alarm *a = arg;
    tr_actor_set_state(self, a);
    return tr_send_after(self, tr_self(self), tr_msg_new(TR_MSG_USER, NULL, 0), a->ms, NULL);
}

static inline void tr_test__alarm_receive(tr_actor *self, tr_msg *m)
{
    tr_test__alarm *a = tr_actor_state(self);
    if (tr_msg_type(m) == TR_MSG_USER) {
        tr_test_store(&a->rang, 1);
        tr_exit(self, TR_EXIT_NORMAL);
    }
}

/* Waits until a timer of `ms`, started now on one of rt's workers, has
 * fired. Timers never fire early, so at least `ms` have passed on return;
 * and anything that worker's loop was due to do before that deadline was
 * done first. */
static inline void tr_test_wait_timer(tr_runtime *rt, uint32_t ms)
{
    static const tr_behavior alarm = {
        .name = "alarm", .init = tr_test__alarm_init, .receive = tr_test__alarm_receive};
    tr_test__alarm a = {.ms = ms};
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &alarm, &a, NULL, &id), 0);
    cr_assert(tr_test_wait_ge(&a.rang, 1, ms + 30000), "timer of %u ms never fired", ms);
}

/* An actor id shared through an atomic word. */
static inline void tr_test_store_id(uint64_t *slot, tr_actor_id id)
{
    tr_test_store(slot, id.bits);
}

static inline tr_actor_id tr_test_load_id(const uint64_t *slot)
{
    return (tr_actor_id){tr_test_load(slot)};
}

#endif
