/* Tests for runtime/supervisor.c: strategies, restart types, intensity,
 * escalation through nested supervisors, and ordered shutdown.
 *
 * Children log START and STOP events. Where an order across children is
 * asserted, either the supervisor causes it (it stops one child at a time,
 * waiting for each DOWN), or the runtime has one worker, so children's
 * callbacks run in the order the supervisor spawned them. */
#include <criterion/criterion.h>
#include <string.h>

#include "rt.h"
#include "slot.h" /* internal: is an id still alive (a snapshot) */
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(supervisor, .timeout = 60.0);

enum { MSG_CRASH = TR_MSG_USER, MSG_PARENT_GO };
enum { EV_START = 1, EV_STOP };

#define KIDS 8

static tr_test_log events;
static uint64_t kid_id[KIDS]; /* atomics: current id of child i */
static uint64_t starts[KIDS]; /* atomics */
static uint64_t stops[KIDS];  /* atomics */
static int64_t stop_reason[KIDS];
static uint64_t stop_ns[KIDS];
static const int32_t index_of[KIDS] = {0, 1, 2, 3, 4, 5, 6, 7};

static void setup(void)
{
    tr_test_log_init(&events);
}

static void teardown(void)
{
    tr_test_log_fini(&events);
}

static int kid_init(tr_actor *self, void *arg)
{
    int32_t i = *(const int32_t *)arg;
    tr_actor_set_state(self, (void *)arg);
    tr_test_store_id(&kid_id[i], tr_self(self));
    tr_test_log_add(&events, EV_START, i, 0);
    tr_test_add(&starts[i], 1);
    return 0;
}

static void kid_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_CRASH) {
        int64_t reason;
        memcpy(&reason, tr_msg_data(m), sizeof(reason));
        tr_exit(self, (int)reason);
    }
}

static void kid_terminate(tr_actor *self, int reason)
{
    int32_t i = *(const int32_t *)tr_actor_state(self);
    stop_reason[i] = reason;
    stop_ns[i] = tr_test_now_ns();
    tr_test_log_add(&events, EV_STOP, i, reason);
    tr_test_add(&stops[i], 1);
}

static const tr_behavior kid = {
    .name = "kid", .init = kid_init, .receive = kid_receive, .terminate = kid_terminate};

/* Ignores TR_MSG_SHUTDOWN: its supervisor must kill it at the deadline. */
static int stubborn_init(tr_actor *self, void *arg)
{
    tr_actor_trap_shutdown(self, true);
    return kid_init(self, arg);
}

static const tr_behavior stubborn = {
    .name = "stubborn", .init = stubborn_init, .receive = kid_receive, .terminate = kid_terminate};

/* Fails at every start. */
static int crasher_init(tr_actor *self, void *arg)
{
    kid_init(self, arg);
    return TR_ECODEC;
}

static const tr_behavior crasher = {
    .name = "crasher", .init = crasher_init, .receive = kid_receive, .terminate = kid_terminate};

static tr_child_spec spec(int32_t i, const tr_behavior *b, tr_restart restart)
{
    tr_child_spec s;
    tr_child_spec_defaults(&s);
    s.name = "kid";
    s.behavior = b;
    s.arg = (void *)&index_of[i];
    s.restart = restart;
    return s;
}

static tr_supervisor_config config(tr_sup_strategy strategy, const tr_child_spec *kids, size_t n)
{
    tr_supervisor_config cfg;
    tr_supervisor_config_defaults(&cfg);
    cfg.strategy = strategy;
    cfg.max_restarts = 100;
    cfg.period_ms = 60000;
    cfg.children = kids;
    cfg.nchildren = n;
    return cfg;
}

static tr_actor_id spawn_sup(tr_runtime *rt, const tr_supervisor_config *cfg)
{
    tr_actor_id id;
    cr_assert_eq(tr_supervisor_spawn(rt, cfg, NULL, &id), 0);
    return id;
}

static void wait_starts(int i, uint64_t n)
{
    cr_assert(tr_test_wait_ge(&starts[i], n, 20000), "child %d: %llu starts, want %llu", i,
              (unsigned long long)tr_test_load(&starts[i]), (unsigned long long)n);
}

static void crash(int i, int64_t reason)
{
    cr_assert_eq(tr_send_copy(tr_test_load_id(&kid_id[i]), MSG_CRASH, &reason, sizeof(reason)), 0);
}

static bool id_dead(void *arg)
{
    tr_actor_id id = *(tr_actor_id *)arg;
    return !tr__slot_is_alive(tr__slot_get(id), id);
}

/* Once an actor's slot is dead, its DOWNs have been sent. */
static void wait_dead(tr_actor_id id)
{
    cr_assert(tr_test_wait_until(id_dead, &id, 20000), "actor still alive");
}

static bool is_alive(tr_actor_id id)
{
    return !id_dead(&id);
}

/* Checks the STOP events, in order, against want[] (child indices). */
static void expect_stops(const int32_t *want, const int64_t *reasons, size_t n)
{
    int32_t who[64];
    int64_t val[64];
    size_t got = tr_test_log_select(&events, EV_STOP, who, val, 64);
    cr_assert_eq(got, n, "%zu stops, want %zu", got, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(who[i], want[i], "stop %zu was child %d, want %d", i, who[i], want[i]);
        cr_assert_eq(val[i], reasons[i], "stop %zu (child %d) reason %lld, want %lld", i, who[i],
                     (long long)val[i], (long long)reasons[i]);
    }
}

Test(supervisor, defaults_are_the_documented_values)
{
    tr_supervisor_config cfg;
    memset(&cfg, 0x5a, sizeof(cfg));
    tr_supervisor_config_defaults(&cfg);
    cr_assert_eq(cfg.strategy, TR_ONE_FOR_ONE);
    cr_assert_eq(cfg.max_restarts, 3);
    cr_assert_eq(cfg.period_ms, 5000);
    cr_assert_null(cfg.children);
    cr_assert_eq(cfg.nchildren, 0);
    tr_child_spec s;
    memset(&s, 0x5a, sizeof(s));
    tr_child_spec_defaults(&s);
    cr_assert_eq(s.restart, TR_PERMANENT);
    cr_assert_eq(s.shutdown_ms, 5000);
    cr_assert_null(s.behavior);
    cr_assert_eq(s.mailbox_capacity, 0);
    cr_assert_eq(s.overflow, TR_OVERFLOW_REFUSE);
}

Test(supervisor, spawn_rejects_invalid_configs, .init = setup, .fini = teardown)
{
    tr_runtime *rt = tr_test_runtime(1);
    tr_actor_id id;
    tr_supervisor_config cfg = config(TR_ONE_FOR_ONE, NULL, 1);
    cr_assert_eq(tr_supervisor_spawn(rt, NULL, NULL, &id), TR_EINVAL);
    cr_assert_eq(tr_supervisor_spawn(rt, &cfg, NULL, &id), TR_EINVAL, "children missing");
    tr_child_spec bad = spec(0, NULL, TR_PERMANENT);
    cfg = config(TR_ONE_FOR_ONE, &bad, 1);
    cr_assert_eq(tr_supervisor_spawn(rt, &cfg, NULL, &id), TR_EINVAL, "no behavior");
    tr_behavior no_receive = {.name = "x"};
    bad.behavior = &no_receive;
    cr_assert_eq(tr_supervisor_spawn(rt, &cfg, NULL, &id), TR_EINVAL, "no receive");
    cr_assert_eq(tr_runtime_actor_count(rt), 0);
    tr_test_runtime_finish(rt);
}

Test(supervisor, shutdown_stops_children_in_reverse_start_order, .init = setup, .fini = teardown)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_child_spec kids[4];
    for (int i = 0; i < 4; i++) {
        kids[i] = spec(i, &kid, TR_PERMANENT);
    }
    tr_supervisor_config cfg = config(TR_ONE_FOR_ONE, kids, 4);
    spawn_sup(rt, &cfg);
    for (int i = 0; i < 4; i++) {
        wait_starts(i, 1);
    }
    cr_assert_eq(tr_runtime_actor_count(rt), 5);
    tr_test_runtime_finish(rt);
    const int32_t order[] = {3, 2, 1, 0};
    const int64_t why[] = {TR_EXIT_SHUTDOWN, TR_EXIT_SHUTDOWN, TR_EXIT_SHUTDOWN, TR_EXIT_SHUTDOWN};
    expect_stops(order, why, 4);
}

Test(supervisor, one_for_one_restarts_only_the_child_that_exited, .init = setup, .fini = teardown)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_child_spec kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = spec(i, &kid, TR_PERMANENT);
    }
    tr_supervisor_config cfg = config(TR_ONE_FOR_ONE, kids, 3);
    tr_actor_id sup = spawn_sup(rt, &cfg);
    for (int i = 0; i < 3; i++) {
        wait_starts(i, 1);
    }
    tr_actor_id old = tr_test_load_id(&kid_id[1]);
    crash(1, TR_EXIT_USER + 1);
    wait_starts(1, 2);
    tr_actor_id fresh = tr_test_load_id(&kid_id[1]);
    cr_assert_neq(fresh.bits, old.bits, "the restarted child is a new actor");
    cr_assert_eq(tr_send_copy(old, MSG_PARENT_GO, NULL, 0), TR_ECLOSED);
    /* Had the others been touched, it would have happened before the
     * restart we just saw. */
    cr_assert_eq(tr_test_load(&starts[0]), 1);
    cr_assert_eq(tr_test_load(&starts[2]), 1);
    cr_assert_eq(tr_test_load(&stops[0]), 0);
    cr_assert_eq(tr_test_load(&stops[2]), 0);
    cr_assert_eq(stop_reason[1], TR_EXIT_USER + 1);
    cr_assert(is_alive(sup));
    tr_test_runtime_finish(rt);
    const int32_t order[] = {1, 2, 1, 0};
    const int64_t why[] = {TR_EXIT_USER + 1, TR_EXIT_SHUTDOWN, TR_EXIT_SHUTDOWN, TR_EXIT_SHUTDOWN};
    expect_stops(order, why, 4);
}

Test(supervisor, one_for_all_stops_the_rest_in_reverse_then_restarts_all_in_order, .init = setup,
     .fini = teardown)
{
    tr_runtime *rt = tr_test_runtime(1); /* start order is observable */
    tr_child_spec kids[4];
    for (int i = 0; i < 4; i++) {
        kids[i] = spec(i, &kid, TR_PERMANENT);
    }
    tr_supervisor_config cfg = config(TR_ONE_FOR_ALL, kids, 4);
    spawn_sup(rt, &cfg);
    for (int i = 0; i < 4; i++) {
        wait_starts(i, 1);
    }
    crash(1, TR_EXIT_USER + 7);
    for (int i = 0; i < 4; i++) {
        wait_starts(i, 2);
    }
    tr_test_event ev[32];
    size_t n = tr_test_log_get(&events, ev, 32);
    /* 4 starts, then: 1 crashed; 3, 2, 0 stopped; 0, 1, 2, 3 started. */
    const tr_test_event want[] = {
        {EV_START, 0, 0},
        {EV_START, 1, 0},
        {EV_START, 2, 0},
        {EV_START, 3, 0},
        {EV_STOP, 1, TR_EXIT_USER + 7},
        {EV_STOP, 3, TR_EXIT_SHUTDOWN},
        {EV_STOP, 2, TR_EXIT_SHUTDOWN},
        {EV_STOP, 0, TR_EXIT_SHUTDOWN},
        {EV_START, 0, 0},
        {EV_START, 1, 0},
        {EV_START, 2, 0},
        {EV_START, 3, 0},
    };
    cr_assert_eq(n, sizeof(want) / sizeof(want[0]), "%zu events", n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(ev[i].kind, want[i].kind, "event %zu", i);
        cr_assert_eq(ev[i].who, want[i].who, "event %zu: child %d, want %d", i, ev[i].who,
                     want[i].who);
        cr_assert_eq(ev[i].val, want[i].val, "event %zu", i);
    }
    tr_test_runtime_finish(rt);
}

Test(supervisor, one_for_all_does_not_restart_a_temporary_child, .init = setup, .fini = teardown)
{
    tr_runtime *rt = tr_test_runtime(1);
    tr_child_spec kids[3] = {spec(0, &kid, TR_PERMANENT), spec(1, &kid, TR_TEMPORARY),
                             spec(2, &kid, TR_PERMANENT)};
    tr_supervisor_config cfg = config(TR_ONE_FOR_ALL, kids, 3);
    spawn_sup(rt, &cfg);
    for (int i = 0; i < 3; i++) {
        wait_starts(i, 1);
    }
    crash(0, TR_EXIT_USER);
    wait_starts(2, 2);
    cr_assert_eq(tr_test_load(&starts[0]), 2);
    cr_assert_eq(tr_test_load(&starts[1]), 1, "temporary children are not restarted");
    cr_assert_eq(tr_test_load(&stops[1]), 1, "but they are stopped with the others");
    cr_assert_eq(stop_reason[1], TR_EXIT_SHUTDOWN);
    cr_assert_eq(tr_runtime_actor_count(rt), 3, "supervisor + children 0 and 2");
    tr_test_runtime_finish(rt);
}

/* A child that must not be restarted: prove it by crashing the sentinel
 * (child 3) afterwards and seeing its restart, which the supervisor handles
 * after the first DOWN (both DOWNs travel on its priority lane in order). */
static void expect_no_restart(int i, int64_t reason)
{
    uint64_t before = tr_test_load(&starts[i]);
    uint64_t sentinel = tr_test_load(&starts[3]);
    tr_actor_id id = tr_test_load_id(&kid_id[i]);
    crash(i, reason);
    wait_dead(id);
    crash(3, TR_EXIT_USER);
    wait_starts(3, sentinel + 1);
    cr_assert_eq(tr_test_load(&starts[i]), before, "child %d was restarted after reason %lld", i,
                 (long long)reason);
}

static void expect_restart(int i, int64_t reason)
{
    uint64_t before = tr_test_load(&starts[i]);
    crash(i, reason);
    wait_starts(i, before + 1);
}

Test(supervisor, restart_types_permanent_transient_temporary, .init = setup, .fini = teardown)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_child_spec kids[6] = {
        spec(0, &kid, TR_PERMANENT), spec(1, &kid, TR_TRANSIENT),
        spec(2, &kid, TR_TEMPORARY), spec(3, &kid, TR_PERMANENT), /* the sentinel */
        spec(4, &kid, TR_TRANSIENT), spec(5, &kid, TR_TEMPORARY),
    };
    tr_supervisor_config cfg = config(TR_ONE_FOR_ONE, kids, 6);
    tr_actor_id sup = spawn_sup(rt, &cfg);
    for (int i = 0; i < 6; i++) {
        wait_starts(i, 1);
    }
    expect_restart(0, TR_EXIT_NORMAL);      /* permanent: even a normal exit */
    expect_restart(0, TR_EXIT_SHUTDOWN);    /* permanent: even a shutdown exit */
    expect_restart(1, TR_EXIT_USER + 2);    /* transient: an abnormal exit */
    expect_restart(1, TR_EXIT_KILLED);      /* transient: killed is abnormal */
    expect_no_restart(1, TR_EXIT_NORMAL);   /* transient: a normal exit */
    expect_no_restart(4, TR_EXIT_SHUTDOWN); /* transient: a shutdown exit */
    expect_no_restart(2, TR_EXIT_USER + 3); /* temporary: even a crash */
    expect_no_restart(5, TR_EXIT_NORMAL);   /* temporary: a normal exit */
    cr_assert(is_alive(sup));
    cr_assert_eq(tr_test_load(&starts[0]), 3);
    cr_assert_eq(tr_test_load(&starts[1]), 3);
    cr_assert_eq(tr_test_load(&starts[2]), 1);
    cr_assert_eq(tr_test_load(&starts[4]), 1);
    cr_assert_eq(tr_test_load(&starts[5]), 1);
    tr_test_runtime_finish(rt);
}

Test(supervisor, too_many_restarts_make_it_exit_with_max_restarts, .init = setup, .fini = teardown)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_child_spec kids[2] = {spec(0, &kid, TR_PERMANENT), spec(1, &kid, TR_PERMANENT)};
    tr_supervisor_config cfg = config(TR_ONE_FOR_ONE, kids, 2);
    cfg.max_restarts = 2;
    tr_actor_id sup = spawn_sup(rt, &cfg);
    tr_test_watch w;
    tr_test_watch_start(rt, &w, sup);
    wait_starts(0, 1);
    wait_starts(1, 1);
    expect_restart(0, TR_EXIT_USER);
    expect_restart(0, TR_EXIT_USER);
    crash(0, TR_EXIT_USER); /* the third restart in the period is one too many */
    cr_assert(tr_test_wait_ge(&w.downs, 1, 20000));
    cr_assert_eq(w.reason, TR_EXIT_MAX_RESTARTS, "reason %lld", (long long)w.reason);
    cr_assert_eq(w.down_ref, w.ref);
    cr_assert_eq(tr_test_load(&starts[0]), 3);
    cr_assert_eq(tr_test_load(&starts[1]), 1);
    cr_assert_eq(tr_test_load(&stops[1]), 1, "the remaining child was stopped first");
    cr_assert_eq(stop_reason[1], TR_EXIT_SHUTDOWN);
    cr_assert(tr_test_wait_actor_count(rt, 1, 10000), "only the watcher is left");
    tr_test_runtime_finish(rt);
}

Test(supervisor, zero_max_restarts_gives_up_at_the_first_exit, .init = setup, .fini = teardown)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_child_spec kids[1] = {spec(0, &kid, TR_PERMANENT)};
    tr_supervisor_config cfg = config(TR_ONE_FOR_ONE, kids, 1);
    cfg.max_restarts = 0;
    tr_actor_id sup = spawn_sup(rt, &cfg);
    tr_test_watch w;
    tr_test_watch_start(rt, &w, sup);
    wait_starts(0, 1);
    crash(0, TR_EXIT_USER);
    cr_assert(tr_test_wait_ge(&w.downs, 1, 20000));
    cr_assert_eq(w.reason, TR_EXIT_MAX_RESTARTS);
    cr_assert_eq(tr_test_load(&starts[0]), 1);
    tr_test_runtime_finish(rt);
}

Test(supervisor, restarts_older_than_the_period_are_forgotten, .init = setup, .fini = teardown)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_child_spec kids[1] = {spec(0, &kid, TR_PERMANENT)};
    tr_supervisor_config cfg = config(TR_ONE_FOR_ONE, kids, 1);
    cfg.max_restarts = 1;
    cfg.period_ms = 300;
    tr_actor_id sup = spawn_sup(rt, &cfg);
    tr_test_watch w;
    tr_test_watch_start(rt, &w, sup);
    wait_starts(0, 1);
    expect_restart(0, TR_EXIT_USER); /* the one restart allowed per 300 ms */
    tr_test_wait_timer(rt, 400);     /* at least 400 ms later */
    expect_restart(0, TR_EXIT_USER); /* allowed again: the first has expired */
    cr_assert(is_alive(sup));
    cr_assert_eq(tr_test_load(&w.downs), 0);
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_test_load(&starts[0]), 3);
}

/* ---- nesting ---- */

static tr_child_spec inner_kids[2];
static tr_supervisor_config inner_cfg;

typedef struct parent {
    const tr_supervisor_config *cfg;
    uint64_t sup;
    uint64_t mref;
    int rc;
    int64_t reason;
    uint64_t down_ref;
    uint64_t downs;
} parent;

static parent P;

static int parent_init(tr_actor *self, void *arg)
{
    (void)arg;
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);
    opts.monitor = true; /* no window for the supervisor to exit unseen */
    opts.monitor_ref = &P.mref;
    tr_actor_id id;
    P.rc = tr_supervisor_spawn(tr_actor_runtime(self), P.cfg, &opts, &id);
    P.sup = id.bits;
    return 0;
}

static void parent_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == TR_MSG_DOWN && tr_msg_from(m).bits == P.sup) {
        P.reason = tr_msg_reason(m);
        P.down_ref = tr_msg_ref(m);
        tr_test_add(&P.downs, 1);
    }
}

static const tr_behavior parent_behavior = {
    .name = "parent", .init = parent_init, .receive = parent_receive};

Test(supervisor, nested_supervisor_giving_up_escalates_to_its_parent, .init = setup,
     .fini = teardown)
{
    tr_runtime *rt = tr_test_runtime(2);
    /* inner: one child that fails at every start, one restart allowed */
    inner_kids[0] = spec(0, &crasher, TR_PERMANENT);
    inner_cfg = config(TR_ONE_FOR_ONE, inner_kids, 1);
    inner_cfg.max_restarts = 1;
    /* outer: the inner supervisor as its child, one restart allowed */
    tr_child_spec outer_kids[1];
    tr_child_spec_defaults(&outer_kids[0]);
    outer_kids[0].name = "inner";
    outer_kids[0].behavior = tr_supervisor_behavior();
    outer_kids[0].arg = &inner_cfg;
    tr_supervisor_config outer = config(TR_ONE_FOR_ONE, outer_kids, 1);
    outer.max_restarts = 1;
    P.cfg = &outer; /* copied at spawn */
    tr_actor_id p;
    cr_assert_eq(tr_spawn(rt, &parent_behavior, NULL, NULL, &p), 0);
    cr_assert(tr_test_wait_ge(&P.downs, 1, 20000));
    cr_assert_eq(P.rc, 0);
    cr_assert_eq(P.reason, TR_EXIT_MAX_RESTARTS, "reason %lld", (long long)P.reason);
    cr_assert_eq(P.down_ref, P.mref);
    /* inner: start + 1 restart, twice (the outer restarts it once) */
    cr_assert_eq(tr_test_load(&starts[0]), 4);
    cr_assert_eq(tr_test_load(&stops[0]), 0, "a failed init runs no terminate");
    cr_assert(tr_test_wait_actor_count(rt, 1, 10000), "only the parent is left");
    tr_test_runtime_finish(rt);
}

Test(supervisor, nested_shutdown_stops_the_whole_tree_in_reverse_order, .init = setup,
     .fini = teardown)
{
    tr_runtime *rt = tr_test_runtime(2);
    inner_kids[0] = spec(1, &kid, TR_PERMANENT);
    inner_kids[1] = spec(2, &kid, TR_PERMANENT);
    inner_cfg = config(TR_ONE_FOR_ONE, inner_kids, 2);
    tr_child_spec outer_kids[3];
    outer_kids[0] = spec(0, &kid, TR_PERMANENT);
    tr_child_spec_defaults(&outer_kids[1]);
    outer_kids[1].behavior = tr_supervisor_behavior();
    outer_kids[1].arg = &inner_cfg;
    outer_kids[2] = spec(3, &kid, TR_PERMANENT);
    tr_supervisor_config outer = config(TR_ONE_FOR_ONE, outer_kids, 3);
    spawn_sup(rt, &outer);
    for (int i = 0; i < 4; i++) {
        wait_starts(i, 1);
    }
    cr_assert_eq(tr_runtime_actor_count(rt), 6);
    tr_test_runtime_finish(rt);
    const int32_t order[] = {3, 2, 1, 0};
    const int64_t why[] = {TR_EXIT_SHUTDOWN, TR_EXIT_SHUTDOWN, TR_EXIT_SHUTDOWN, TR_EXIT_SHUTDOWN};
    expect_stops(order, why, 4);
}

/* ---- stopping with deadlines ---- */

Test(supervisor, child_ignoring_shutdown_is_killed_at_its_deadline, .init = setup, .fini = teardown)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_child_spec kids[2] = {spec(0, &kid, TR_PERMANENT), spec(1, &stubborn, TR_PERMANENT)};
    kids[1].shutdown_ms = 200;
    tr_supervisor_config cfg = config(TR_ONE_FOR_ONE, kids, 2);
    spawn_sup(rt, &cfg);
    wait_starts(0, 1);
    wait_starts(1, 1);
    uint64_t t0 = tr_test_now_ns();
    cr_assert_eq(tr_runtime_shutdown(rt, 10000), 0, "the supervisor met the runtime deadline");
    cr_assert_eq(tr_runtime_actor_count(rt), 0);
    tr_runtime_free(rt);
    const int32_t order[] = {1, 0};
    const int64_t why[] = {TR_EXIT_KILLED, TR_EXIT_SHUTDOWN};
    expect_stops(order, why, 2);
    cr_assert_geq(stop_ns[1] - t0, 200ull * 1000000, "killed before its deadline: %llu ns",
                  (unsigned long long)(stop_ns[1] - t0));
    cr_assert_geq(stop_ns[0], stop_ns[1], "the next child waits for the previous one");
}

Test(supervisor, killing_the_supervisor_takes_its_children_along, .init = setup, .fini = teardown)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_child_spec kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = spec(i, &kid, TR_PERMANENT);
    }
    tr_supervisor_config cfg = config(TR_ONE_FOR_ONE, kids, 3);
    tr_actor_id sup = spawn_sup(rt, &cfg);
    tr_test_watch w;
    tr_test_watch_start(rt, &w, sup);
    for (int i = 0; i < 3; i++) {
        wait_starts(i, 1);
    }
    cr_assert_eq(tr_kill(sup, 0), 0);
    cr_assert(tr_test_wait_ge(&w.downs, 1, 20000));
    cr_assert_eq(w.reason, TR_EXIT_KILLED);
    for (int i = 0; i < 3; i++) {
        cr_assert(tr_test_wait_ge(&stops[i], 1, 20000));
        cr_assert_eq(stop_reason[i], TR_EXIT_KILLED, "child %d", i);
        cr_assert_eq(tr_test_load(&starts[i]), 1, "nobody restarts them");
    }
    cr_assert(tr_test_wait_actor_count(rt, 1, 10000));
    tr_test_runtime_finish(rt);
}
