/* Tests for runtime/timer.c: send-after (never early), periodic timers,
 * cancellation, and timers dying with their owner. Every "did not happen"
 * is proved by a later timer on the same worker loop arriving first. */
#include <criterion/criterion.h>
#include <string.h>

#include "rt.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(timer, .timeout = 60.0);

enum {
    MSG_FIRE = TR_MSG_USER,
    MSG_CANCELLED,
    MSG_LATER,
    MSG_TICK,
    MSG_CHECK,
    MSG_ONCE,
};

static uint32_t u32_of(const tr_msg *m)
{
    uint32_t v;
    memcpy(&v, tr_msg_data(m), sizeof(v));
    return v;
}

/* ---- one-shot timers never fire early ---- */

#define NDELAYS 6
static const uint32_t delays[NDELAYS] = {0, 1, 5, 20, 50, 120};

typedef struct early {
    tr_actor_id to; /* NONE: self */
    int rc[NDELAYS];
    uint64_t id[NDELAYS];
    uint64_t t0_ns[NDELAYS];
    uint64_t owner;
} early;

typedef struct arrivals {
    int64_t elapsed_ns[NDELAYS];
    uint64_t ref[NDELAYS];
    uint64_t from[NDELAYS];
    uint32_t order[NDELAYS];
    uint64_t n;
} arrivals;

static early E;
static arrivals A;

static void record_arrival(tr_msg *m)
{
    uint32_t i = u32_of(m);
    uint64_t now = tr_test_now_ns();
    uint64_t n = tr_test_load(&A.n);
    A.elapsed_ns[i] = (int64_t)(now - E.t0_ns[i]);
    A.ref[i] = tr_msg_ref(m);
    A.from[i] = tr_msg_from(m).bits;
    A.order[n] = i;
    tr_test_store(&A.n, n + 1);
}

static int early_init(tr_actor *self, void *arg)
{
    (void)arg;
    E.owner = tr_self(self).bits;
    tr_actor_id to = tr_actor_id_is_none(E.to) ? tr_self(self) : E.to;
    for (uint32_t i = 0; i < NDELAYS; i++) {
        tr_msg *m = tr_msg_new(MSG_FIRE, &i, sizeof(i));
        E.t0_ns[i] = tr_test_now_ns(); /* just before the call */
        E.rc[i] = tr_send_after(self, to, m, delays[i], &E.id[i]);
    }
    return 0;
}

static void early_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == MSG_FIRE) {
        record_arrival(m);
    }
}

static const tr_behavior early_behavior = {
    .name = "early", .init = early_init, .receive = early_receive};
static const tr_behavior arrival_behavior = {.name = "arrivals", .receive = early_receive};

static void check_arrivals(void)
{
    cr_assert_eq(tr_test_load(&A.n), NDELAYS);
    for (uint32_t i = 0; i < NDELAYS; i++) {
        cr_assert_eq(E.rc[i], 0);
        cr_assert_geq(A.elapsed_ns[i], (int64_t)delays[i] * 1000000,
                      "timer of %u ms fired after %lld ns", delays[i], (long long)A.elapsed_ns[i]);
        cr_assert_eq(A.ref[i], E.id[i], "tr_msg_ref is the timer id");
        cr_assert_eq(A.from[i], E.owner, "tr_msg_from is the timer's owner");
        cr_assert_eq(A.order[i], i, "timers arrive in deadline order");
        for (uint32_t j = 0; j < i; j++) {
            cr_assert_neq(E.id[i], E.id[j], "timer ids are distinct");
        }
    }
}

Test(timer, send_after_to_self_never_fires_early)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &early_behavior, NULL, NULL, &id), 0);
    cr_assert(tr_test_wait_ge(&A.n, NDELAYS, 30000));
    tr_test_runtime_finish(rt);
    check_arrivals();
}

Test(timer, send_after_to_an_actor_on_another_worker_never_fires_early)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);
    opts.worker = 1;
    cr_assert_eq(tr_spawn(rt, &arrival_behavior, NULL, &opts, &E.to), 0);
    opts.worker = 0;
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &early_behavior, NULL, &opts, &id), 0);
    cr_assert(tr_test_wait_ge(&A.n, NDELAYS, 30000));
    tr_test_runtime_finish(rt);
    check_arrivals();
}

/* ---- cancel ---- */

typedef struct cancel_case {
    uint64_t cancelled_id, later_id, other_id;
    int cancel_rc, cancel_again_rc, cancel_unknown_rc, cancel_fired_rc;
    int cancel_other_rc;
    uint64_t cancelled_seen, later_seen;
    uint64_t done;
} cancel_case;

static cancel_case C;
static tr_actor_id C_other; /* an actor on the other worker */
static uint64_t other_seen;

static int canceller_init(tr_actor *self, void *arg)
{
    (void)arg;
    tr_actor_id me = tr_self(self);
    tr_send_after(self, me, tr_msg_new(MSG_CANCELLED, NULL, 0), 30, &C.cancelled_id);
    tr_send_after(self, C_other, tr_msg_new(MSG_CANCELLED, NULL, 0), 30, &C.other_id);
    C.cancel_rc = tr_timer_cancel(self, C.cancelled_id);
    C.cancel_other_rc = tr_timer_cancel(self, C.other_id);
    C.cancel_again_rc = tr_timer_cancel(self, C.cancelled_id);
    C.cancel_unknown_rc = tr_timer_cancel(self, 0xdeadbeefull);
    /* Past the cancelled deadline: if the cancelled timer were still armed,
     * this loop would fire it first. */
    tr_send_after(self, me, tr_msg_new(MSG_LATER, NULL, 0), 100, &C.later_id);
    return 0;
}

static void canceller_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_CANCELLED) {
        C.cancelled_seen++;
    } else if (tr_msg_type(m) == MSG_LATER) {
        C.later_seen++;
        C.cancel_fired_rc = tr_timer_cancel(self, C.later_id);
        /* The other actor is on another worker: ask it to report back in
         * order behind anything our loop sent it before. */
        tr_send_copy(C_other, MSG_CHECK, NULL, 0);
    }
}

static void other_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == MSG_CANCELLED) {
        tr_test_add(&other_seen, 1);
    } else if (tr_msg_type(m) == MSG_CHECK) {
        tr_test_store(&C.done, 1);
    }
}

static const tr_behavior canceller = {
    .name = "canceller", .init = canceller_init, .receive = canceller_receive};
static const tr_behavior other = {.name = "other", .receive = other_receive};

Test(timer, cancelled_timer_never_delivers_its_message)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);
    opts.worker = 1;
    cr_assert_eq(tr_spawn(rt, &other, NULL, &opts, &C_other), 0);
    opts.worker = 0;
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &canceller, NULL, &opts, &id), 0);
    cr_assert(tr_test_wait_ge(&C.done, 1, 30000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(C.cancel_rc, 0);
    cr_assert_eq(C.cancel_other_rc, 0);
    cr_assert_eq(C.cancel_again_rc, TR_ENOTFOUND, "a timer is cancelled once");
    cr_assert_eq(C.cancel_unknown_rc, TR_ENOTFOUND);
    cr_assert_eq(C.cancel_fired_rc, TR_ENOTFOUND, "a fired one-shot cannot be cancelled");
    cr_assert_eq(C.later_seen, 1);
    cr_assert_eq(C.cancelled_seen, 0, "the cancelled message arrived");
    cr_assert_eq(tr_test_load(&other_seen), 0, "the cancelled message to another actor arrived");
}

/* ---- periodic ---- */

#define INTERVAL_MS 10
#define TICKS 5

typedef struct every {
    tr_buf *payload;
    uint64_t id;
    int rc;
    uint64_t t0_ns;
    uint64_t ticks;
    uint64_t early; /* ticks that came before t0 + k * interval */
    uint64_t bad;   /* wrong ref, sender or payload */
    int cancel_rc;
    uint64_t ticks_at_check;
    uint64_t done;
} every;

static every V;

static int every_init(tr_actor *self, void *arg)
{
    (void)arg;
    tr_msg *m = tr_msg_new_buf(MSG_TICK, tr_buf_retain(V.payload));
    V.t0_ns = tr_test_now_ns();
    V.rc = tr_send_every(self, tr_self(self), m, INTERVAL_MS, &V.id);
    return 0;
}

static void every_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_TICK) {
        V.ticks++;
        int64_t elapsed = (int64_t)(tr_test_now_ns() - V.t0_ns);
        if (elapsed < (int64_t)V.ticks * INTERVAL_MS * 1000000) {
            V.early++;
        }
        if (tr_msg_ref(m) != V.id || !tr_actor_id_eq(tr_msg_from(m), tr_self(self)) ||
            tr_msg_buf(m) != V.payload) {
            V.bad++;
        }
        if (V.ticks == TICKS) {
            V.cancel_rc = tr_timer_cancel(self, V.id);
            /* Several intervals later: any further tick would come first. */
            tr_send_after(self, tr_self(self), tr_msg_new(MSG_CHECK, NULL, 0), 6 * INTERVAL_MS,
                          NULL);
        }
    } else if (tr_msg_type(m) == MSG_CHECK) {
        V.ticks_at_check = V.ticks;
        tr_test_store(&V.done, 1);
    }
}

static const tr_behavior every_behavior = {
    .name = "every", .init = every_init, .receive = every_receive};

Test(timer, send_every_ticks_on_schedule_until_cancelled)
{
    V.payload = tr_buf_copy("tick", 4);
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &every_behavior, NULL, NULL, &id), 0);
    cr_assert(tr_test_wait_ge(&V.done, 1, 30000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(V.rc, 0);
    cr_assert_eq(V.cancel_rc, 0);
    cr_assert_eq(V.ticks_at_check, TICKS, "ticks after cancel: %llu",
                 (unsigned long long)V.ticks_at_check);
    cr_assert_eq(V.early, 0, "the k-th tick came before k intervals");
    cr_assert_eq(V.bad, 0);
    cr_assert_eq(tr_buf_refs(V.payload), 1, "every tick shared the buffer and released it");
    tr_buf_release(V.payload);
}

/* ---- argument errors ---- */

typedef struct errs {
    int every_zero, after_null, every_null;
    uint64_t done;
} errs;

static errs X;

static int errs_init(tr_actor *self, void *arg)
{
    (void)arg;
    X.every_zero = tr_send_every(self, tr_self(self), tr_msg_new(MSG_TICK, NULL, 0), 0, NULL);
    X.after_null = tr_send_after(self, tr_self(self), NULL, 10, NULL);
    X.every_null = tr_send_every(self, tr_self(self), NULL, 10, NULL);
    tr_test_store(&X.done, 1);
    return 0;
}

static void ignore(tr_actor *self, tr_msg *m)
{
    (void)self;
    (void)m;
}

static const tr_behavior errs_behavior = {.name = "errs", .init = errs_init, .receive = ignore};

Test(timer, invalid_arguments_are_refused_and_the_message_freed)
{
    tr_runtime *rt = tr_test_runtime(1);
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &errs_behavior, NULL, NULL, &id), 0);
    cr_assert(tr_test_wait_ge(&X.done, 1, 10000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(X.every_zero, TR_EINVAL);
    cr_assert_eq(X.after_null, TR_EINVAL);
    cr_assert_eq(X.every_null, TR_EINVAL);
}

/* ---- timers die with their owner ---- */

typedef struct orphan {
    tr_actor_id observer;
    uint64_t mref;
    uint64_t ticks;
    uint64_t downs;
    int64_t owner_term;
    uint64_t done;
    tr_buf *payload;
} orphan;

static orphan O;

static int owner_init(tr_actor *self, void *arg)
{
    (void)arg;
    tr_send_every(self, O.observer, tr_msg_new_buf(MSG_TICK, tr_buf_retain(O.payload)), 5, NULL);
    tr_send_after(self, O.observer, tr_msg_new_buf(MSG_ONCE, tr_buf_retain(O.payload)), 5, NULL);
    /* Pending messages of the timers are freed at exit: ASan checks. */
    tr_exit(self, TR_EXIT_NORMAL);
    return 0;
}

static void owner_terminate(tr_actor *self, int reason)
{
    /* A timer started in terminate dies too. */
    tr_send_after(self, O.observer, tr_msg_new(MSG_ONCE, NULL, 0), 1, NULL);
    O.owner_term = reason + 1;
}

static const tr_behavior owner_behavior = {
    .name = "owner", .init = owner_init, .receive = ignore, .terminate = owner_terminate};

static int observer_init(tr_actor *self, void *arg)
{
    (void)arg;
    O.observer = tr_self(self);
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);
    /* default placement from an actor: the same loop, so its timers would fire before ours */
    opts.monitor = true;
    opts.monitor_ref = &O.mref;
    tr_actor_id owner;
    return tr_spawn(tr_actor_runtime(self), &owner_behavior, NULL, &opts, &owner);
}

static void observer_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == TR_MSG_DOWN && tr_msg_ref(m) == O.mref) {
        O.downs++;
        /* The owner's timers were due 5 ms after its init: wait past that
         * on the same loop. */
        tr_send_after(self, tr_self(self), tr_msg_new(MSG_CHECK, NULL, 0), 60, NULL);
    } else if (tr_msg_type(m) == MSG_TICK || tr_msg_type(m) == MSG_ONCE) {
        O.ticks++;
    } else if (tr_msg_type(m) == MSG_CHECK) {
        tr_test_store(&O.done, 1);
    }
}

static const tr_behavior observer_behavior = {
    .name = "observer", .init = observer_init, .receive = observer_receive};

Test(timer, timers_die_with_their_owner)
{
    O.payload = tr_buf_copy("orphan", 6);
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &observer_behavior, NULL, NULL, &id), 0);
    cr_assert(tr_test_wait_ge(&O.done, 1, 30000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(O.downs, 1);
    cr_assert_eq(O.owner_term, TR_EXIT_NORMAL + 1, "terminate ran");
    cr_assert_eq(O.ticks, 0, "a dead owner's timer delivered %llu messages",
                 (unsigned long long)O.ticks);
    cr_assert_eq(tr_buf_refs(O.payload), 1, "the timers' messages were freed");
    tr_buf_release(O.payload);
}

/* ---- a timer whose target died ---- */

typedef struct dead_target {
    tr_actor_id target;
    uint64_t later;
    uint64_t done;
    tr_buf *payload;
} dead_target;

static dead_target D;

static int dead_sender_init(tr_actor *self, void *arg)
{
    (void)arg;
    tr_send_after(self, D.target, tr_msg_new_buf(MSG_ONCE, tr_buf_retain(D.payload)), 1, NULL);
    tr_send_every(self, D.target, tr_msg_new_buf(MSG_TICK, tr_buf_retain(D.payload)), 2, NULL);
    tr_send_after(self, tr_self(self), tr_msg_new(MSG_LATER, NULL, 0), 30, NULL);
    return 0;
}

static void dead_sender_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == MSG_LATER) {
        tr_test_store(&D.done, 1);
    }
}

static const tr_behavior dead_sender = {
    .name = "dead_sender", .init = dead_sender_init, .receive = dead_sender_receive};

Test(timer, timer_to_a_dead_actor_frees_its_message_and_the_owner_carries_on)
{
    D.payload = tr_buf_copy("nobody", 6);
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id victim;
    cr_assert_eq(tr_spawn(rt, &errs_behavior, NULL, NULL, &victim), 0);
    cr_assert_eq(tr_kill(victim, 0), 0);
    cr_assert(tr_test_wait_actor_count(rt, 0, 10000));
    D.target = victim;
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &dead_sender, NULL, NULL, &id), 0);
    cr_assert(tr_test_wait_ge(&D.done, 1, 30000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_buf_refs(D.payload), 1, "refused timer messages were freed");
    tr_buf_release(D.payload);
}

/* ---- requests are not timers ---- */

typedef struct req_not_timer {
    uint64_t req;
    int req_rc, cancel_rc;
    uint64_t timeouts;
    uint64_t done;
} req_not_timer;

static req_not_timer Q;

static void silent_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    (void)m; /* never replies */
}

static const tr_behavior silent = {.name = "silent", .receive = silent_receive};

static int requester_init(tr_actor *self, void *arg)
{
    tr_actor_id *target = arg;
    Q.req_rc = tr_request(self, *target, tr_msg_new(MSG_FIRE, NULL, 0), 20, &Q.req);
    Q.cancel_rc = tr_timer_cancel(self, Q.req);
    return 0;
}

static void requester_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == TR_MSG_TIMEOUT && tr_msg_ref(m) == Q.req) {
        Q.timeouts++;
        tr_test_store(&Q.done, 1);
    }
}

static const tr_behavior requester = {
    .name = "requester", .init = requester_init, .receive = requester_receive};

Test(timer, timer_cancel_does_not_touch_a_pending_request)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id target, id;
    cr_assert_eq(tr_spawn(rt, &silent, NULL, NULL, &target), 0);
    cr_assert_eq(tr_spawn(rt, &requester, &target, NULL, &id), 0);
    cr_assert(tr_test_wait_ge(&Q.done, 1, 30000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(Q.req_rc, 0);
    cr_assert_eq(Q.cancel_rc, TR_ENOTFOUND);
    cr_assert_eq(Q.timeouts, 1, "the request still timed out");
}
