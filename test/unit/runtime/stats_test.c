/* Tests for runtime/stats.c: a worker's counters (started actors, turns,
 * messages, busy time, sleeps) and an actor's mailbox depth, read from the
 * test thread while the workers run, and from several threads at once
 * while actors churn (run under ThreadSanitizer: label "concurrency").
 *
 * The counters are brought up to date by their worker after each batch of
 * turns, so every check that follows activity waits for them (bounded
 * polling), then asserts the exact value where one is known. */
#include <criterion/criterion.h>
#include <ev.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "rounds.h"
#include "rt.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(stats, .timeout = 60.0);

enum {
    MSG_PING = TR_MSG_USER,
    MSG_PONG,
    MSG_GO,
    MSG_FILL,
    MSG_NUM,
    MSG_SPIN,
    MSG_STOP,
};

static tr_worker_stats stats_of(const tr_runtime *rt, unsigned worker)
{
    tr_worker_stats st;
    memset(&st, 0xa5, sizeof(st));
    cr_assert_eq(tr_runtime_worker_stats(rt, worker, &st), 0);
    return st;
}

/* ---- waiting for a counter ---- */

enum field { F_ACTORS, F_TURNS, F_MESSAGES, F_BUSY, F_SLEEPS };

typedef struct stat_wait {
    const tr_runtime *rt;
    unsigned worker;
    enum field field;
    uint64_t want;
    bool exact; /* == want, else >= want */
} stat_wait;

static uint64_t field_of(const tr_worker_stats *st, enum field f)
{
    switch (f) {
    case F_ACTORS:
        return st->actors;
    case F_TURNS:
        return st->turns;
    case F_MESSAGES:
        return st->messages;
    case F_BUSY:
        return st->busy_ns;
    case F_SLEEPS:
        return st->sleeps;
    default:
        return 0;
    }
}

static bool stat_reached(void *arg)
{
    stat_wait *s = arg;
    tr_worker_stats st;
    if (tr_runtime_worker_stats(s->rt, s->worker, &st) != 0) {
        return false;
    }
    uint64_t v = field_of(&st, s->field);
    return s->exact ? v == s->want : v >= s->want;
}

static bool wait_stat(const tr_runtime *rt, unsigned worker, enum field f, uint64_t want,
                      bool exact)
{
    stat_wait s = {rt, worker, f, want, exact};
    return tr_test_wait_until(stat_reached, &s, 10000);
}

/* ---- arguments ---- */

Test(stats, worker_stats_reject_bad_arguments_and_start_at_zero)
{
    tr_runtime *rt = tr_test_runtime_ex(2, 0, false);
    tr_worker_stats st;
    cr_assert_eq(tr_runtime_worker_stats(rt, 2, &st), TR_EINVAL);
    cr_assert_eq(tr_runtime_worker_stats(rt, UINT_MAX, &st), TR_EINVAL);
    cr_assert_eq(tr_runtime_worker_stats(rt, 0, NULL), TR_EINVAL);
    cr_assert_eq(tr_runtime_worker_stats(NULL, 0, &st), TR_EINVAL);
    for (unsigned w = 0; w < 2; w++) {
        st = stats_of(rt, w);
        cr_assert_eq(st.actors, 0);
        cr_assert_eq(st.turns, 0);
        cr_assert_eq(st.messages, 0);
        cr_assert_eq(st.busy_ns, 0);
        cr_assert_eq(st.sleeps, 0);
    }
    tr_runtime_free(rt);
}

/* ---- turns, messages, busy time and sleeps of a ping-pong ---- */

#define ROUND_TRIPS 500

typedef struct pp {
    tr_actor_id peer;
    uint64_t pongs;
    uint64_t done; /* atomics */
} pp;

static int pp_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

static void pinger_receive(tr_actor *self, tr_msg *m)
{
    pp *p = tr_actor_state(self);
    if (tr_msg_type(m) == MSG_PONG && ++p->pongs == ROUND_TRIPS) {
        tr_test_store(&p->done, 1);
        return;
    }
    tr_send_copy(p->peer, MSG_PING, NULL, 0); /* MSG_GO or a pong: ping again */
}

static void ponger_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    tr_send_copy(tr_msg_from(m), MSG_PONG, NULL, 0);
}

static const tr_behavior pinger = {.name = "ping", .init = pp_init, .receive = pinger_receive};
static const tr_behavior ponger = {.name = "pong", .receive = ponger_receive};

Test(stats, ping_pong_moves_turns_messages_busy_time_and_sleeps_by_exact_counts)
{
    tr_runtime *rt = tr_test_runtime(2);
    static pp ping;
    memset(&ping, 0, sizeof(ping));
    tr_spawn_opts o;
    tr_spawn_opts_defaults(&o);
    tr_actor_id a, b;
    o.worker = 1;
    cr_assert_eq(tr_spawn(rt, &ponger, NULL, &o, &b), 0);
    ping.peer = b;
    o.worker = 0;
    cr_assert_eq(tr_spawn(rt, &pinger, &ping, &o, &a), 0);
    /* Each actor's first turn (its start, no message) is counted before
     * the baseline, so what follows is exactly the ping-pong. */
    for (unsigned w = 0; w < 2; w++) {
        cr_assert(wait_stat(rt, w, F_ACTORS, 1, true), "worker %u: one started actor", w);
        cr_assert(wait_stat(rt, w, F_TURNS, 1, true), "worker %u: its start turn", w);
        cr_assert(wait_stat(rt, w, F_SLEEPS, 1, false), "worker %u: asleep once idle", w);
    }
    tr_worker_stats before[2] = {stats_of(rt, 0), stats_of(rt, 1)};
    cr_assert_eq(before[0].messages, 0, "a start is not a mailbox message");
    cr_assert_eq(tr_send_copy(a, MSG_GO, NULL, 0), 0);
    cr_assert(tr_test_wait_ge(&ping.done, 1, 50000));

    /* One message is in flight at a time, so each one is a turn of its
     * own: the pinger takes GO and every pong, the ponger every ping. */
    uint64_t want[2] = {ROUND_TRIPS + 1, ROUND_TRIPS};
    for (unsigned w = 0; w < 2; w++) {
        cr_assert(wait_stat(rt, w, F_MESSAGES, before[w].messages + want[w], false));
        cr_assert(wait_stat(rt, w, F_TURNS, before[w].turns + want[w], false));
        /* Awake while it worked, then asleep again once idle. */
        cr_assert(wait_stat(rt, w, F_BUSY, before[w].busy_ns + 1, false), "worker %u busy", w);
        cr_assert(wait_stat(rt, w, F_SLEEPS, before[w].sleeps + 1, false), "worker %u slept", w);
        tr_worker_stats after = stats_of(rt, w);
        cr_assert_eq(after.messages - before[w].messages, want[w], "worker %u messages", w);
        cr_assert_eq(after.turns - before[w].turns, want[w], "worker %u turns", w);
        cr_assert_eq(after.actors, 1);
    }
    tr_test_runtime_finish(rt);
}

/* ---- the started-actors gauge ---- */

static void stop_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_STOP) {
        tr_exit(self, TR_EXIT_NORMAL);
    }
}

static const tr_behavior stopper = {.name = "stopper", .receive = stop_receive};

Test(stats, actors_gauge_follows_starts_and_exits_on_each_worker)
{
    tr_runtime *rt = tr_test_runtime_ex(2, 0, false);
    tr_spawn_opts o;
    tr_spawn_opts_defaults(&o);
    tr_actor_id on1[10], on0[5];
    o.worker = 1;
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(tr_spawn(rt, &stopper, NULL, &o, &on1[i]), 0);
    }
    cr_assert_eq(stats_of(rt, 1).actors, 0, "spawned is not started");
    cr_assert_eq(tr_runtime_start(rt), 0);
    o.worker = 0;
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(tr_spawn(rt, &stopper, NULL, &o, &on0[i]), 0);
    }
    cr_assert(wait_stat(rt, 1, F_ACTORS, 10, true));
    cr_assert(wait_stat(rt, 0, F_ACTORS, 5, true));
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(tr_send_copy(on1[i], MSG_STOP, NULL, 0), 0);
    }
    cr_assert(wait_stat(rt, 1, F_ACTORS, 6, true));
    for (int i = 4; i < 10; i++) {
        cr_assert_eq(tr_kill(on1[i], 0), 0);
    }
    cr_assert(wait_stat(rt, 1, F_ACTORS, 0, true));
    cr_assert_eq(stats_of(rt, 0).actors, 5, "the other worker's actors are untouched");
    cr_assert_eq(tr_runtime_shutdown(rt, 5000), 0);
    cr_assert_eq(tr_runtime_stop(rt), 0);
    for (unsigned w = 0; w < 2; w++) {
        cr_assert_eq(stats_of(rt, w).actors, 0, "stopped: the counters stay readable");
    }
    tr_runtime_free(rt);
}

/* ---- busy time ---- */

#define SPIN_NS 50000000u /* 50 ms */

static uint64_t spun;

static void spin_for(uint64_t ns)
{
    uint64_t start = tr_test_now_ns();
    while (tr_test_now_ns() - start < ns) {
    }
}

static void spin_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == MSG_SPIN) {
        spin_for(SPIN_NS);
        tr_test_store(&spun, 1);
    }
}

static const tr_behavior spinner = {.name = "spinner", .receive = spin_receive};

Test(stats, busy_time_covers_a_long_receive_never_exceeds_uptime_and_stays_still_while_idle)
{
    tr_runtime *rt = tr_test_runtime_ex(2, 0, false);
    uint64_t t0 = tr_test_now_ns();
    cr_assert_eq(tr_runtime_start(rt), 0);
    tr_spawn_opts o;
    tr_spawn_opts_defaults(&o);
    o.worker = 0;
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &spinner, NULL, &o, &id), 0);
    cr_assert(wait_stat(rt, 0, F_TURNS, 1, true));
    uint64_t busy0 = stats_of(rt, 0).busy_ns;
    cr_assert_eq(tr_send_copy(id, MSG_SPIN, NULL, 0), 0);
    cr_assert(tr_test_wait_ge(&spun, 1, 10000));
    cr_assert(wait_stat(rt, 0, F_BUSY, busy0 + SPIN_NS, false),
              "50 ms inside receive count as busy (busy %llu ns, was %llu)",
              (unsigned long long)stats_of(rt, 0).busy_ns, (unsigned long long)busy0);

    /* Idle: the workers sleep; a timer wakes one of them once. */
    tr_worker_stats idle0[2] = {stats_of(rt, 0), stats_of(rt, 1)};
    uint64_t wall0 = tr_test_now_ns();
    tr_test_wait_timer(rt, 300);
    uint64_t now = tr_test_now_ns();
    for (unsigned w = 0; w < 2; w++) {
        tr_worker_stats st = stats_of(rt, w);
        cr_assert_leq(st.busy_ns, now - t0, "worker %u: busy %llu ns in %llu ns of uptime", w,
                      (unsigned long long)st.busy_ns, (unsigned long long)(now - t0));
        uint64_t grew = st.busy_ns - idle0[w].busy_ns;
        cr_assert_lt(grew, (now - wall0) / 4, "worker %u: busy %llu of %llu ns while idle", w,
                     (unsigned long long)grew, (unsigned long long)(now - wall0));
    }
    tr_test_runtime_finish(rt);
}

/* A watcher of the actor's own on its worker's loop (a socket's would be
 * the same): its callback runs inside the event loop, right after the
 * wait that the timer ends, and is work, not sleep. */
typedef struct looper {
    ev_timer timer;
} looper;

static uint64_t callback_spun;

static void on_spin_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    spin_for(SPIN_NS);
    tr_test_store(&callback_spun, 1);
}

static int looper_init(tr_actor *self, void *arg)
{
    looper *l = arg;
    tr_actor_set_state(self, l);
    ev_timer_init(&l->timer, on_spin_timer, 0.02, 0.);
    ev_timer_start(tr_actor_loop(self), &l->timer);
    return 0;
}

static void looper_terminate(tr_actor *self, int reason)
{
    (void)reason;
    looper *l = tr_actor_state(self);
    ev_timer_stop(tr_actor_loop(self), &l->timer);
}

static const tr_behavior looping = {
    .name = "looper", .init = looper_init, .receive = stop_receive, .terminate = looper_terminate};

Test(stats, busy_time_counts_callbacks_run_inside_the_event_loop)
{
    tr_runtime *rt = tr_test_runtime(2);
    cr_assert(wait_stat(rt, 0, F_SLEEPS, 1, false), "worker 0 idle and asleep");
    uint64_t busy0 = stats_of(rt, 0).busy_ns;
    static looper l;
    tr_spawn_opts o;
    tr_spawn_opts_defaults(&o);
    o.worker = 0;
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &looping, &l, &o, &id), 0);
    cr_assert(tr_test_wait_ge(&callback_spun, 1, 10000));
    cr_assert(wait_stat(rt, 0, F_BUSY, busy0 + SPIN_NS, false),
              "50 ms in a loop callback count as busy (busy %llu ns, was %llu)",
              (unsigned long long)stats_of(rt, 0).busy_ns, (unsigned long long)busy0);
    tr_test_runtime_finish(rt);
}

/* ---- mailbox depth ---- */

typedef struct blocker {
    tr_actor_id helper;
    uint32_t fills, to_helper;
    uint64_t blocked;  /* atomics: inside its receive, waiting */
    uint64_t release;  /* atomics: the test lets it go on */
    uint64_t received; /* atomics: MSG_FILL taken */
    int monitor_rc;    /* written before `blocked` */
} blocker;

static blocker blk;
static uint64_t helper_got;

static void blocker_receive(tr_actor *self, tr_msg *m)
{
    (void)m;
    if (tr_msg_type(m) == MSG_FILL) {
        tr_test_add(&blk.received, 1);
        return;
    }
    if (tr_msg_type(m) != MSG_GO) {
        return;
    }
    /* Same worker: each of these lands in its mailbox at once. */
    for (uint32_t i = 0; i < blk.fills; i++) {
        tr_send_copy(tr_self(self), MSG_FILL, NULL, 0);
    }
    for (uint32_t i = 0; i < blk.to_helper; i++) {
        tr_send_copy(blk.helper, MSG_NUM, NULL, 0);
    }
    uint64_t ref;
    blk.monitor_rc = tr_monitor(self, blk.helper, &ref); /* a system message to the helper */
    tr_test_store(&blk.blocked, 1);
    /* Bounded: a failing test must not leave a worker stuck for ever. */
    uint64_t deadline = tr_test_now_ms() + 30000;
    while (!tr_test_load(&blk.release) && tr_test_now_ms() < deadline) {
        sched_yield();
    }
}

static void helper_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == MSG_NUM) {
        tr_test_add(&helper_got, 1);
    }
}

static const tr_behavior blocking = {.name = "blocker", .receive = blocker_receive};
static const tr_behavior helping = {.name = "helper", .receive = helper_receive};

Test(stats, mailbox_depth_counts_user_messages_queued_behind_a_blocked_receive)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_spawn_opts o;
    tr_spawn_opts_defaults(&o);
    o.worker = 0;
    tr_actor_id b;
    memset(&blk, 0, sizeof(blk));
    blk.fills = 7;
    blk.to_helper = 3;
    cr_assert_eq(tr_spawn(rt, &helping, NULL, &o, &blk.helper), 0);
    cr_assert_eq(tr_spawn(rt, &blocking, NULL, &o, &b), 0);
    uint32_t depth = 99;
    cr_assert_eq(tr_actor_mailbox_depth(b, &depth), 0);
    cr_assert_eq(depth, 0, "a new actor's mailbox is empty");

    cr_assert_eq(tr_send_copy(b, MSG_GO, NULL, 0), 0);
    cr_assert(tr_test_wait_ge(&blk.blocked, 1, 10000));
    cr_assert_eq(blk.monitor_rc, 0);
    cr_assert_eq(tr_actor_mailbox_depth(b, &depth), 0);
    cr_assert_eq(depth, 7, "the 7 sent to it since it blocked (GO is no longer queued)");
    cr_assert_eq(tr_actor_mailbox_depth(blk.helper, &depth), 0);
    cr_assert_eq(depth, 3, "3 user messages; the monitor request is a system message");

    /* From this thread, messages wait in the worker's queue, which the
     * worker takes only between turns: not in the mailbox yet. */
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(tr_send_copy(b, MSG_FILL, NULL, 0), 0);
    }
    cr_assert_eq(tr_actor_mailbox_depth(b, &depth), 0);
    cr_assert_eq(depth, 7, "messages still on their way are not counted");

    tr_test_store(&blk.release, 1);
    cr_assert(tr_test_wait_ge(&blk.received, 12, 10000));
    cr_assert(tr_test_wait_ge(&helper_got, 3, 10000));
    /* Each message leaves the count before its receive runs. */
    cr_assert_eq(tr_actor_mailbox_depth(b, &depth), 0);
    cr_assert_eq(depth, 0);
    cr_assert_eq(tr_actor_mailbox_depth(blk.helper, &depth), 0);
    cr_assert_eq(depth, 0);
    tr_test_runtime_finish(rt);
}

Test(stats, mailbox_depth_of_a_gone_actor_is_eclosed_and_a_null_out_is_einval)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &stopper, NULL, NULL, &id), 0);
    uint32_t depth = 99;
    cr_assert_eq(tr_actor_mailbox_depth(id, NULL), TR_EINVAL);
    cr_assert_eq(tr_actor_mailbox_depth(TR_ACTOR_NONE, &depth), TR_ECLOSED);
    cr_assert_eq(tr_actor_mailbox_depth(TR_ACTOR_NONE, NULL), TR_EINVAL);
    cr_assert_eq(tr_send_copy(id, MSG_STOP, NULL, 0), 0);
    cr_assert(tr_test_wait_actor_count(rt, 0, 10000));
    cr_assert_eq(tr_actor_mailbox_depth(id, &depth), TR_ECLOSED);
    cr_assert_eq(depth, 99, "*depth is left alone on failure");
    /* A new actor, most likely in the same slot: the old id stays closed. */
    tr_actor_id again;
    cr_assert_eq(tr_spawn(rt, &stopper, NULL, NULL, &again), 0);
    cr_assert_eq(tr_actor_mailbox_depth(id, &depth), TR_ECLOSED);
    cr_assert_eq(tr_actor_mailbox_depth(again, &depth), 0);
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_actor_mailbox_depth(again, &depth), TR_ECLOSED, "after shutdown");
}

/* ---- stress: readers on every thread while actors churn ---- */

#define RING 64
#define READERS 2
#define NUMS 5 /* MSG_NUM sent to each churner: with GO and STOP, 7 user messages at most */

typedef struct churn {
    tr_runtime *rt;
    uint64_t ring[RING]; /* atomics: ids of recent actors, live or not */
    uint64_t next;       /* atomics */
    uint64_t stop;       /* atomics: readers finish */
    uint64_t bad;        /* atomics: anything a reader found wrong */
    uint64_t first_bad;  /* atomics: what the first one was */
} churn;

static churn ch;

static void note(uint64_t what)
{
    if (__atomic_fetch_add(&ch.bad, 1, __ATOMIC_SEQ_CST) == 0) {
        tr_test_store(&ch.first_bad, what);
    }
}

static void remember(tr_actor_id id)
{
    uint64_t i = __atomic_fetch_add(&ch.next, 1, __ATOMIC_SEQ_CST);
    tr_test_store_id(&ch.ring[i % RING], id);
}

static const tr_behavior churner;

/* GO spawns a child next to itself (started by this worker) that gets a
 * few messages and stops; STOP ends it. */
static void churn_receive(tr_actor *self, tr_msg *m)
{
    switch (tr_msg_type(m)) {
    case MSG_GO: {
        tr_actor_id kid;
        if (tr_spawn(tr_actor_runtime(self), &churner, NULL, NULL, &kid) == 0) {
            remember(kid);
            for (int i = 0; i < NUMS; i++) {
                tr_send_copy(kid, MSG_NUM, NULL, 0);
            }
            tr_send_copy(kid, MSG_STOP, NULL, 0);
        }
        break;
    }
    case MSG_STOP:
        tr_exit(self, TR_EXIT_NORMAL);
        break;
    default:
        break;
    }
}

static const tr_behavior churner = {.name = "churner", .receive = churn_receive};

static void *reader_main(void *arg)
{
    (void)arg;
    unsigned nw = tr_runtime_workers(ch.rt);
    tr_worker_stats last[8];
    memset(last, 0, sizeof(last));
    while (!tr_test_load(&ch.stop)) {
        for (unsigned w = 0; w < nw && w < 8; w++) {
            tr_worker_stats st;
            if (tr_runtime_worker_stats(ch.rt, w, &st) != 0) {
                note(1);
                continue;
            }
            /* One reader sees each counter only grow; the gauge stays sane. */
            if (st.turns < last[w].turns || st.messages < last[w].messages ||
                st.busy_ns < last[w].busy_ns || st.sleeps < last[w].sleeps) {
                note(2);
            }
            if (st.actors > 100000) {
                note(3); /* a decrement below zero wraps */
            }
            last[w] = st;
        }
        for (unsigned i = 0; i < RING; i++) {
            tr_actor_id id = tr_test_load_id(&ch.ring[i]);
            if (id.bits == 0) {
                continue;
            }
            uint32_t depth = 0;
            int rc = tr_actor_mailbox_depth(id, &depth);
            if (rc == 0 && depth > NUMS + 2) {
                note(1000 + depth);
            } else if (rc != 0 && rc != TR_ECLOSED) {
                note(4);
            }
        }
    }
    return NULL;
}

Test(stats, readers_on_many_threads_see_sane_stats_and_depths_while_actors_churn)
{
    memset(&ch, 0, sizeof(ch));
    ch.rt = tr_test_runtime(2);
    pthread_t readers[READERS];
    for (int i = 0; i < READERS; i++) {
        cr_assert_eq(pthread_create(&readers[i], NULL, reader_main, NULL), 0);
    }
    rounds r = rounds_begin(20, 2000);
    while (rounds_next(&r)) {
        /* Foreign spawns go round-robin; each churner's child starts on
         * its parent's worker. Some exit by STOP, some by a kill. */
        for (int i = 0; i < 16; i++) {
            tr_actor_id id;
            cr_assert_eq(tr_spawn(ch.rt, &churner, NULL, NULL, &id), 0);
            remember(id);
            for (int k = 0; k < NUMS; k++) {
                tr_send_copy(id, MSG_NUM, NULL, 0);
            }
            tr_send_copy(id, MSG_GO, NULL, 0);
            if (i % 4 == 0) {
                tr_kill(id, 0);
            } else {
                tr_send_copy(id, MSG_STOP, NULL, 0);
            }
        }
    }
    cr_assert(tr_test_wait_actor_count(ch.rt, 0, 30000), "every churner exited");
    tr_test_store(&ch.stop, 1);
    for (int i = 0; i < READERS; i++) {
        pthread_join(readers[i], NULL);
    }
    cr_assert_eq(tr_test_load(&ch.bad), 0, "%llu bad reads; first: %llu",
                 (unsigned long long)tr_test_load(&ch.bad),
                 (unsigned long long)tr_test_load(&ch.first_bad));
    uint64_t messages = 0;
    for (unsigned w = 0; w < 2; w++) {
        cr_assert(wait_stat(ch.rt, w, F_ACTORS, 0, true), "worker %u: no actor left", w);
        messages += stats_of(ch.rt, w).messages;
    }
    cr_assert_gt(messages, 0);
    tr_test_runtime_finish(ch.rt);
}
