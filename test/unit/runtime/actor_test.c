/* Tests for runtime/actor.c: spawn, send, receive, ordering, bounded
 * mailboxes, ids after death, monitors, kill, request/reply. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "actor.h" /* internal: the actor record's size */
#include "rt.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(actor, .timeout = 60.0);

enum {
    MSG_NUM = TR_MSG_USER,
    MSG_SEQ,
    MSG_STOP,
    MSG_EXIT,
    MSG_GO,
    MSG_PING,
    MSG_PONG,
    MSG_CHECK,
    MSG_MARK,
    MSG_PLAIN,
};

static uint32_t u32_of(const tr_msg *m)
{
    uint32_t v;
    memcpy(&v, tr_msg_data(m), sizeof(v));
    return v;
}

static int64_t i64_of(const tr_msg *m)
{
    int64_t v;
    memcpy(&v, tr_msg_data(m), sizeof(v));
    return v;
}

static int send_i64(tr_actor_id to, uint32_t type, int64_t v)
{
    return tr_send_copy(to, type, &v, sizeof(v));
}

/* ---- spawn, send, receive ---- */

static uint64_t sum, count;

static void sum_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == MSG_NUM) {
        tr_test_add(&sum, u32_of(m));
        tr_test_add(&count, 1);
    }
}

static const tr_behavior summer = {.name = "summer", .receive = sum_receive};

Test(actor, spawn_send_receive_delivers_every_message_once)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &summer, NULL, NULL, &id), 0);
    cr_assert(!tr_actor_id_is_none(id));
    for (uint32_t i = 1; i <= 1000; i++) {
        cr_assert_eq(tr_send_copy(id, MSG_NUM, &i, sizeof(i)), 0);
    }
    cr_assert(tr_test_wait_ge(&count, 1000, 10000));
    cr_assert_eq(tr_test_load(&count), 1000);
    cr_assert_eq(tr_test_load(&sum), 500500);
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_test_load(&count), 1000, "nothing arrives twice");
}

/* ---- lifecycle callbacks ---- */

enum { EV_INIT = 1, EV_MSG, EV_TERM };
static tr_test_log events;
static int token;
static uint64_t state_ok;

static int life_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    tr_test_log_add(&events, EV_INIT, 0, arg == &token);
    return 0;
}

static void life_receive(tr_actor *self, tr_msg *m)
{
    if (tr_actor_state(self) == &token) {
        tr_test_add(&state_ok, 1);
    }
    tr_test_log_add(&events, EV_MSG, (int32_t)tr_msg_type(m),
                    tr_msg_type(m) == MSG_NUM ? (int64_t)u32_of(m) : -1);
}

static void life_terminate(tr_actor *self, int reason)
{
    tr_test_log_add(&events, EV_TERM, 0, reason);
}

static const tr_behavior life = {
    .name = "life", .init = life_init, .receive = life_receive, .terminate = life_terminate};

Test(actor, init_runs_once_before_the_first_message_and_terminate_last)
{
    tr_test_log_init(&events);
    tr_runtime *rt = tr_test_runtime_ex(2, 0, false);
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &life, &token, NULL, &id), 0);
    for (uint32_t i = 1; i <= 3; i++) {
        cr_assert_eq(tr_send_copy(id, MSG_NUM, &i, sizeof(i)), 0, "messages queue before init");
    }
    cr_assert_eq(tr_runtime_start(rt), 0);
    cr_assert(tr_test_wait_ge(&events.n, 4, 10000));
    tr_test_runtime_finish(rt);

    tr_test_event ev[8];
    size_t n = tr_test_log_get(&events, ev, 8);
    cr_assert_eq(n, 6, "init, 3 messages, shutdown, terminate: got %zu", n);
    cr_assert_eq(ev[0].kind, EV_INIT);
    cr_assert_eq(ev[0].val, 1, "init got its arg");
    for (int i = 1; i <= 3; i++) {
        cr_assert_eq(ev[i].kind, EV_MSG);
        cr_assert_eq(ev[i].val, i);
    }
    cr_assert_eq(ev[4].kind, EV_MSG);
    cr_assert_eq(ev[4].who, TR_MSG_SHUTDOWN, "receive sees the shutdown message");
    cr_assert_eq(ev[5].kind, EV_TERM);
    cr_assert_eq(ev[5].val, TR_EXIT_SHUTDOWN);
    cr_assert_eq(tr_test_load(&state_ok), 4, "the state set in init is seen in receive");
    tr_test_log_fini(&events);
}

typedef struct whoami {
    tr_runtime *rt;
    uint64_t self_bits;
    uint64_t worker;
    uint64_t checks;
    uint64_t done;
} whoami;

static int whoami_init(tr_actor *self, void *arg)
{
    whoami *w = arg;
    w->self_bits = tr_self(self).bits;
    w->worker = tr_actor_worker(self);
    w->checks = (tr_actor_runtime(self) == w->rt) + (tr_actor_loop(self) != NULL) +
                (tr_runtime_on_worker(w->rt) != 0) + (tr_actor_state(self) == NULL);
    tr_test_store(&w->done, 1);
    return 0;
}

static void noop_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    (void)m;
}

static const tr_behavior whoami_behavior = {
    .name = "whoami", .init = whoami_init, .receive = noop_receive};

Test(actor, self_runtime_worker_and_loop_are_the_actors_own)
{
    tr_runtime *rt = tr_test_runtime(2);
    cr_assert_not(tr_runtime_on_worker(rt), "the test thread is no worker");
    for (int wk = 0; wk < 2; wk++) {
        whoami w = {.rt = rt};
        tr_spawn_opts opts;
        tr_spawn_opts_defaults(&opts);
        opts.worker = wk;
        tr_actor_id id;
        cr_assert_eq(tr_spawn(rt, &whoami_behavior, &w, &opts, &id), 0);
        cr_assert(tr_test_wait_ge(&w.done, 1, 10000));
        cr_assert_eq(w.self_bits, id.bits, "tr_self is the spawned id");
        cr_assert_eq(w.worker, (uint64_t)wk, "opts.worker pins the actor");
        cr_assert_eq(w.checks, 4);
    }
    tr_test_runtime_finish(rt);
}

Test(actor, spawn_opts_defaults_are_documented_values)
{
    tr_spawn_opts o;
    memset(&o, 0x5a, sizeof(o));
    tr_spawn_opts_defaults(&o);
    cr_assert_eq(o.worker, -1);

    cr_assert_eq(o.mailbox_capacity, 0);
    cr_assert_eq(o.overflow, TR_OVERFLOW_REFUSE);
    cr_assert_eq(o.monitor, false);
    cr_assert_null(o.monitor_ref);
}

Test(actor, spawn_rejects_invalid_arguments)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id id = TR_ACTOR_NONE;
    tr_behavior no_receive = {.name = "bad"};
    tr_spawn_opts opts;
    cr_assert_eq(tr_spawn(NULL, &summer, NULL, NULL, &id), TR_EINVAL);
    cr_assert_eq(tr_spawn(rt, NULL, NULL, NULL, &id), TR_EINVAL);
    cr_assert_eq(tr_spawn(rt, &no_receive, NULL, NULL, &id), TR_EINVAL);
    cr_assert_eq(tr_spawn(rt, &summer, NULL, NULL, NULL), TR_EINVAL);
    tr_spawn_opts_defaults(&opts);
    opts.worker = 2;
    cr_assert_eq(tr_spawn(rt, &summer, NULL, &opts, &id), TR_EINVAL, "worker out of range");
    tr_spawn_opts_defaults(&opts);
    opts.monitor = true;
    cr_assert_eq(tr_spawn(rt, &summer, NULL, &opts, &id), TR_EINVAL,
                 "monitor needs an actor to watch from");
    cr_assert(tr_actor_id_is_none(id), "nothing written on failure");
    cr_assert_eq(tr_runtime_actor_count(rt), 0);
    tr_test_runtime_finish(rt);
}

Test(actor, send_rejects_null_and_none)
{
    cr_assert_eq(tr_send((tr_actor_id){1}, NULL), TR_EINVAL);
    cr_assert_eq(tr_send(TR_ACTOR_NONE, tr_msg_new(MSG_NUM, NULL, 0)), TR_ECLOSED);
    cr_assert_eq(tr_send_copy(TR_ACTOR_NONE, MSG_NUM, "x", 1), TR_ECLOSED);
    cr_assert_eq(tr_kill(TR_ACTOR_NONE, 0), TR_ECLOSED);
    /* An id whose index was never handed out. */
    tr_actor_id bogus = {(5ull << 32) | 0x00abcdefu};
    cr_assert_eq(tr_send_copy(bogus, MSG_NUM, "x", 1), TR_ECLOSED);
    /* Every refused message was freed: ASan would report a leak. */
}

Test(actor, default_placement_is_round_robin_over_workers)
{
    tr_runtime *rt = tr_test_runtime(2);
    whoami w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (whoami){.rt = rt};
        tr_actor_id id;
        cr_assert_eq(tr_spawn(rt, &whoami_behavior, &w[i], NULL, &id), 0);
    }
    unsigned on[2] = {0, 0};
    for (int i = 0; i < 4; i++) {
        cr_assert(tr_test_wait_ge(&w[i].done, 1, 10000));
        cr_assert_lt(w[i].worker, 2);
        on[w[i].worker]++;
    }
    cr_assert_eq(on[0], 2);
    cr_assert_eq(on[1], 2);
    tr_test_runtime_finish(rt);
}

/* ---- ordering ---- */

#define FIFO_THREADS 4
#define FIFO_ACTORS 4
#define FIFO_SENDERS (FIFO_THREADS + FIFO_ACTORS)
#define FIFO_EACH 20000

typedef struct seq_msg {
    uint32_t sender;
    uint32_t seq;
} seq_msg;

static int64_t fifo_next[FIFO_SENDERS];
static uint64_t fifo_got, fifo_bad;

static void fifo_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) != MSG_SEQ) {
        return;
    }
    seq_msg s;
    memcpy(&s, tr_msg_data(m), sizeof(s));
    /* Each sender checks its own sequence: exactly the next one. */
    if (s.sender >= FIFO_SENDERS || s.seq != fifo_next[s.sender]) {
        tr_test_add(&fifo_bad, 1);
    } else {
        fifo_next[s.sender]++;
    }
    tr_test_add(&fifo_got, 1);
}

static const tr_behavior fifo_receiver = {.name = "fifo", .receive = fifo_receive};

typedef struct fifo_sender_arg {
    tr_actor_id to;
    uint32_t sender;
} fifo_sender_arg;

static void send_sequence(tr_actor_id to, uint32_t sender)
{
    for (uint32_t i = 0; i < FIFO_EACH; i++) {
        seq_msg s = {sender, i};
        if (tr_send_copy(to, MSG_SEQ, &s, sizeof(s)) != 0) {
            tr_test_add(&fifo_bad, 1000000);
        }
    }
}

static void *fifo_thread(void *arg)
{
    fifo_sender_arg *a = arg;
    send_sequence(a->to, a->sender);
    return NULL;
}

static void fifo_actor_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_GO) {
        fifo_sender_arg *a = tr_actor_state(self);
        send_sequence(a->to, a->sender);
    }
}

static int fifo_actor_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

static const tr_behavior fifo_sender = {
    .name = "fifo_sender", .init = fifo_actor_init, .receive = fifo_actor_receive};

Test(actor, per_sender_fifo_holds_for_threads_and_actors_at_once)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id rx;
    cr_assert_eq(tr_spawn(rt, &fifo_receiver, NULL, NULL, &rx), 0);
    fifo_sender_arg args[FIFO_SENDERS];
    tr_actor_id senders[FIFO_ACTORS];
    for (uint32_t i = 0; i < FIFO_SENDERS; i++) {
        args[i] = (fifo_sender_arg){rx, i};
    }
    for (uint32_t i = 0; i < FIFO_ACTORS; i++) {
        cr_assert_eq(tr_spawn(rt, &fifo_sender, &args[FIFO_THREADS + i], NULL, &senders[i]), 0);
    }
    pthread_t t[FIFO_THREADS];
    for (uint32_t i = 0; i < FIFO_THREADS; i++) {
        cr_assert_eq(pthread_create(&t[i], NULL, fifo_thread, &args[i]), 0);
    }
    for (uint32_t i = 0; i < FIFO_ACTORS; i++) {
        cr_assert_eq(tr_send_copy(senders[i], MSG_GO, NULL, 0), 0);
    }
    for (uint32_t i = 0; i < FIFO_THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    cr_assert(tr_test_wait_ge(&fifo_got, FIFO_SENDERS * FIFO_EACH, 30000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_test_load(&fifo_bad), 0, "%llu out of order",
                 (unsigned long long)tr_test_load(&fifo_bad));
    cr_assert_eq(tr_test_load(&fifo_got), FIFO_SENDERS * FIFO_EACH);
    for (uint32_t i = 0; i < FIFO_SENDERS; i++) {
        cr_assert_eq(fifo_next[i], FIFO_EACH, "sender %u", i);
    }
}

/* ---- many producers ---- */

#define PRODUCERS 8
#define PER_PRODUCER 100000

static uint8_t *seen;
static int64_t prod_next[PRODUCERS];
static uint64_t prod_got, prod_dup, prod_order;

static void prod_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) != MSG_SEQ) {
        return;
    }
    seq_msg s;
    memcpy(&s, tr_msg_data(m), sizeof(s));
    size_t bit = (size_t)s.sender * PER_PRODUCER + s.seq;
    if (seen[bit / 8] & (1u << (bit % 8))) {
        tr_test_add(&prod_dup, 1);
    }
    seen[bit / 8] |= (uint8_t)(1u << (bit % 8));
    if (s.seq != prod_next[s.sender]) {
        tr_test_add(&prod_order, 1);
    }
    prod_next[s.sender] = (int64_t)s.seq + 1;
    tr_test_add(&prod_got, 1);
}

static const tr_behavior prod_receiver = {.name = "sink", .receive = prod_receive};

typedef struct prod_arg {
    tr_actor_id to;
    uint32_t index;
    uint32_t failed;
} prod_arg;

static void *producer(void *arg)
{
    prod_arg *p = arg;
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        seq_msg s = {p->index, i};
        if (tr_send_copy(p->to, MSG_SEQ, &s, sizeof(s)) != 0) {
            p->failed++;
        }
    }
    return NULL;
}

Test(actor, eight_producers_to_one_mailbox_lose_and_duplicate_nothing)
{
    seen = calloc((size_t)PRODUCERS * PER_PRODUCER / 8 + 1, 1);
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id rx;
    cr_assert_eq(tr_spawn(rt, &prod_receiver, NULL, NULL, &rx), 0);
    pthread_t t[PRODUCERS];
    prod_arg a[PRODUCERS];
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        a[i] = (prod_arg){rx, i, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, producer, &a[i]), 0);
    }
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(a[i].failed, 0);
    }
    cr_assert(tr_test_wait_ge(&prod_got, (uint64_t)PRODUCERS * PER_PRODUCER, 50000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_test_load(&prod_got), (uint64_t)PRODUCERS * PER_PRODUCER);
    cr_assert_eq(tr_test_load(&prod_dup), 0);
    cr_assert_eq(tr_test_load(&prod_order), 0);
    for (size_t bit = 0; bit < (size_t)PRODUCERS * PER_PRODUCER; bit++) {
        cr_assert(seen[bit / 8] & (1u << (bit % 8)), "lost (%zu, %zu)", bit / PER_PRODUCER,
                  bit % PER_PRODUCER);
    }
    free(seen);
}

/* ---- bounded mailboxes ---- */

static tr_test_log got_log;

static void log_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == MSG_NUM) {
        tr_test_log_add(&got_log, EV_MSG, 0, u32_of(m));
    }
}

static const tr_behavior logger = {.name = "logger", .receive = log_receive};

static tr_actor_id spawn_bounded(tr_runtime *rt, uint32_t cap, tr_overflow policy)
{
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);
    opts.mailbox_capacity = cap;
    opts.overflow = policy;
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &logger, NULL, &opts, &id), 0);
    return id;
}

Test(actor, bounded_mailbox_refuses_with_ebuffull_when_full)
{
    tr_test_log_init(&got_log);
    /* Not started: nothing is consumed while we fill the mailbox. */
    tr_runtime *rt = tr_test_runtime_ex(1, 0, false);
    tr_actor_id id = spawn_bounded(rt, 4, TR_OVERFLOW_REFUSE);
    for (uint32_t i = 1; i <= 4; i++) {
        cr_assert_eq(tr_send_copy(id, MSG_NUM, &i, sizeof(i)), 0);
    }
    uint32_t v = 5;
    cr_assert_eq(tr_send_copy(id, MSG_NUM, &v, sizeof(v)), TR_EBUFFULL);
    cr_assert_eq(tr_send(id, tr_msg_new(MSG_NUM, &v, sizeof(v))), TR_EBUFFULL);
    cr_assert_eq(tr_kill(id, 0), 0, "system messages bypass the bound");
    cr_assert_eq(tr_runtime_start(rt), 0);
    cr_assert(tr_test_wait_actor_count(rt, 0, 10000));
    tr_test_runtime_finish(rt);
    /* The kill overtook the queued messages on the priority lane. */
    cr_assert_eq(tr_test_load(&got_log.n), 0);
    tr_test_log_fini(&got_log);
}

Test(actor, bounded_mailbox_delivers_what_it_accepted_and_accepts_again_when_drained)
{
    tr_test_log_init(&got_log);
    tr_runtime *rt = tr_test_runtime_ex(1, 0, false);
    tr_actor_id id = spawn_bounded(rt, 4, TR_OVERFLOW_REFUSE);
    for (uint32_t i = 1; i <= 6; i++) {
        cr_assert_eq(tr_send_copy(id, MSG_NUM, &i, sizeof(i)), i <= 4 ? 0 : TR_EBUFFULL);
    }
    cr_assert_eq(tr_runtime_start(rt), 0);
    cr_assert(tr_test_wait_ge(&got_log.n, 4, 10000));
    uint32_t v = 7;
    cr_assert_eq(tr_send_copy(id, MSG_NUM, &v, sizeof(v)), 0);
    cr_assert(tr_test_wait_ge(&got_log.n, 5, 10000));
    tr_test_runtime_finish(rt);
    int64_t vals[8];
    size_t n = tr_test_log_select(&got_log, EV_MSG, NULL, vals, 8);
    cr_assert_eq(n, 5);
    const int64_t want[] = {1, 2, 3, 4, 7};
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(vals[i], want[i], "message %zu", i);
    }
    tr_test_log_fini(&got_log);
}

Test(actor, drop_oldest_mailbox_keeps_the_newest_capacity_messages)
{
    tr_test_log_init(&got_log);
    tr_runtime *rt = tr_test_runtime_ex(1, 0, false);
    tr_actor_id id = spawn_bounded(rt, 4, TR_OVERFLOW_DROP_OLDEST);
    for (uint32_t i = 1; i <= 8; i++) {
        cr_assert_eq(tr_send_copy(id, MSG_NUM, &i, sizeof(i)), 0, "accepted up to 2x capacity");
    }
    uint32_t v = 9;
    cr_assert_eq(tr_send_copy(id, MSG_NUM, &v, sizeof(v)), TR_EBUFFULL);
    cr_assert_eq(tr_runtime_start(rt), 0);
    cr_assert(tr_test_wait_ge(&got_log.n, 4, 10000));
    tr_test_runtime_finish(rt);
    int64_t vals[8];
    size_t n = tr_test_log_select(&got_log, EV_MSG, NULL, vals, 8);
    cr_assert_eq(n, 4, "got %zu", n);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(vals[i], (int64_t)(5 + i), "the 4 oldest were dropped unread");
    }
    tr_test_log_fini(&got_log);
}

/* EXIT policy: a parent on the same worker spawns the child and fills its
 * mailbox in one callback, so the child cannot run in between. */
typedef struct overflow_case {
    int sends[3];
    uint64_t child;
    uint64_t mref;
    int64_t down_reason;
    uint64_t down_from;
    uint64_t down_ref;
    int after_down;
    int64_t child_term;
    uint64_t done;
} overflow_case;

static overflow_case oc;

static void child_terminate(tr_actor *self, int reason)
{
    (void)self;
    oc.child_term = reason;
}

static const tr_behavior overflow_child = {
    .name = "overflow_child", .receive = noop_receive, .terminate = child_terminate};

static int overflow_parent_init(tr_actor *self, void *arg)
{
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);

    opts.mailbox_capacity = 2;
    opts.overflow = TR_OVERFLOW_EXIT;
    opts.monitor = true;
    opts.monitor_ref = &oc.mref;
    tr_actor_id child;
    if (tr_spawn(tr_actor_runtime(self), &overflow_child, NULL, &opts, &child) < 0) {
        return TR_ENOMEM;
    }
    oc.child = child.bits;
    for (int i = 0; i < 3; i++) {
        oc.sends[i] = tr_send_copy(child, MSG_NUM, &i, sizeof(i));
    }
    return 0;
}

static void overflow_parent_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == TR_MSG_DOWN) {
        oc.down_reason = tr_msg_reason(m);
        oc.down_from = tr_msg_from(m).bits;
        oc.down_ref = tr_msg_ref(m);
        /* Same worker: the child finished exiting before we run. */
        oc.after_down = tr_send_copy((tr_actor_id){oc.child}, MSG_NUM, "x", 1);
        tr_test_store(&oc.done, 1);
    }
}

static const tr_behavior overflow_parent = {
    .name = "overflow_parent", .init = overflow_parent_init, .receive = overflow_parent_receive};

Test(actor, exit_overflow_policy_refuses_and_makes_the_actor_exit_with_ebuffull)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id parent;
    cr_assert_eq(tr_spawn(rt, &overflow_parent, NULL, NULL, &parent), 0);
    cr_assert(tr_test_wait_ge(&oc.done, 1, 10000));
    cr_assert_eq(oc.sends[0], 0);
    cr_assert_eq(oc.sends[1], 0);
    cr_assert_eq(oc.sends[2], TR_EBUFFULL);
    cr_assert_eq(oc.down_reason, TR_EBUFFULL);
    cr_assert_eq(oc.down_from, oc.child);
    cr_assert_eq(oc.down_ref, oc.mref);
    cr_assert_neq(oc.mref, 0);
    cr_assert_eq(oc.child_term, TR_EBUFFULL, "terminate ran with the reason");
    cr_assert_eq(oc.after_down, TR_ECLOSED);
    tr_test_runtime_finish(rt);
}

/* ---- cross-worker ping-pong ---- */

#define ROUND_TRIPS 20000

typedef struct pp {
    tr_actor_id peer;
    unsigned want_worker;
    uint64_t wrong_worker;
    uint64_t wrong_seq;
    uint64_t next;
    uint64_t done;
} pp;

static pp ping_state, pong_state;

static int pp_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

static void pinger_receive(tr_actor *self, tr_msg *m)
{
    pp *p = tr_actor_state(self);
    if (tr_actor_worker(self) != p->want_worker) {
        p->wrong_worker++;
    }
    if (tr_msg_type(m) == MSG_PONG) {
        if ((uint64_t)i64_of(m) != p->next) {
            p->wrong_seq++;
        }
        p->next++;
    } else if (tr_msg_type(m) != MSG_GO) {
        return;
    }
    if (p->next == ROUND_TRIPS) {
        tr_test_store(&p->done, 1);
        return;
    }
    send_i64(p->peer, MSG_PING, (int64_t)p->next);
}

static void ponger_receive(tr_actor *self, tr_msg *m)
{
    pp *p = tr_actor_state(self);
    if (tr_actor_worker(self) != p->want_worker) {
        p->wrong_worker++;
    }
    if (tr_msg_type(m) != MSG_PING) {
        return;
    }
    if ((uint64_t)i64_of(m) != p->next) {
        p->wrong_seq++;
    }
    p->next++;
    /* Answer whoever asked: tr_msg_from is the sending actor. */
    send_i64(tr_msg_from(m), MSG_PONG, i64_of(m));
}

static const tr_behavior pinger = {.name = "ping", .init = pp_init, .receive = pinger_receive};
static const tr_behavior ponger = {.name = "pong", .init = pp_init, .receive = ponger_receive};

Test(actor, cross_worker_ping_pong_completes_every_round_trip_in_order)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);
    tr_actor_id a, b;
    pong_state.want_worker = 1;
    opts.worker = 1;
    cr_assert_eq(tr_spawn(rt, &ponger, &pong_state, &opts, &b), 0);
    ping_state.want_worker = 0;
    ping_state.peer = b;
    opts.worker = 0;
    cr_assert_eq(tr_spawn(rt, &pinger, &ping_state, &opts, &a), 0);
    cr_assert_eq(tr_send_copy(a, MSG_GO, NULL, 0), 0);
    cr_assert(tr_test_wait_ge(&ping_state.done, 1, 50000));
    tr_test_runtime_finish(rt); /* joins the workers: their writes are visible */
    cr_assert_eq(ping_state.next, ROUND_TRIPS);
    cr_assert_eq(pong_state.next, ROUND_TRIPS);
    cr_assert_eq(ping_state.wrong_seq + pong_state.wrong_seq, 0);
    cr_assert_eq(ping_state.wrong_worker + pong_state.wrong_worker, 0);
}

/* ---- many actors, memory returned ---- */

#define MANY 100000

static uint64_t many_init, many_term, many_state_bad;

static int brief_init(tr_actor *self, void *arg)
{
    uint64_t *state = malloc(64); /* freed by terminate: ASan checks */
    if (state == NULL) {
        return TR_ENOMEM;
    }
    *state = (uint64_t)(uintptr_t)arg;
    tr_actor_set_state(self, state);
    tr_test_add(&many_init, 1);
    return 0;
}

static void brief_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_STOP) {
        tr_exit(self, TR_EXIT_NORMAL);
    }
}

static void brief_terminate(tr_actor *self, int reason)
{
    uint64_t *state = tr_actor_state(self);
    if (reason != TR_EXIT_NORMAL || state == NULL) {
        tr_test_add(&many_state_bad, 1);
    }
    free(state);
    tr_test_add(&many_term, 1);
}

static const tr_behavior brief = {
    .name = "brief", .init = brief_init, .receive = brief_receive, .terminate = brief_terminate};

Test(actor, hundred_thousand_actors_spawned_and_exited_return_their_memory)
{
    tr_runtime *rt = tr_test_runtime(2);
    for (uintptr_t i = 0; i < MANY; i++) {
        tr_actor_id id;
        cr_assert_eq(tr_spawn(rt, &brief, (void *)i, NULL, &id), 0);
        cr_assert_eq(tr_send_copy(id, MSG_STOP, NULL, 0), 0);
    }
    cr_assert(tr_test_wait_ge(&many_term, MANY, 50000));
    cr_assert(tr_test_wait_actor_count(rt, 0, 10000), "count %llu",
              (unsigned long long)tr_runtime_actor_count(rt));
    cr_assert_eq(tr_test_load(&many_init), MANY);
    cr_assert_eq(tr_test_load(&many_term), MANY);
    cr_assert_eq(tr_test_load(&many_state_bad), 0);
    tr_test_runtime_finish(rt);
}

/* ---- ids after death ---- */

static int64_t numbered_seen[64];
static uint64_t numbered_msgs;

static int numbered_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

static void numbered_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_STOP) {
        tr_exit(self, TR_EXIT_NORMAL);
    } else if (tr_msg_type(m) == MSG_NUM) {
        uintptr_t me = (uintptr_t)tr_actor_state(self);
        numbered_seen[me]++;
        tr_test_add(&numbered_msgs, 1);
    }
}

static const tr_behavior numbered = {
    .name = "numbered", .init = numbered_init, .receive = numbered_receive};

Test(actor, send_to_a_dead_actor_returns_eclosed)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &numbered, (void *)0, NULL, &id), 0);
    cr_assert_eq(tr_send_copy(id, MSG_STOP, NULL, 0), 0);
    cr_assert(tr_test_wait_actor_count(rt, 0, 10000));
    cr_assert_eq(tr_send_copy(id, MSG_NUM, "x", 1), TR_ECLOSED);
    cr_assert_eq(tr_send(id, tr_msg_new(MSG_NUM, NULL, 0)), TR_ECLOSED);
    cr_assert_eq(tr_kill(id, 0), TR_ECLOSED);
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_test_load(&numbered_msgs), 0);
}

Test(actor, stale_id_stays_eclosed_after_its_slot_is_reused)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id old;
    cr_assert_eq(tr_spawn(rt, &numbered, (void *)0, NULL, &old), 0);
    cr_assert_eq(tr_send_copy(old, MSG_STOP, NULL, 0), 0);
    cr_assert(tr_test_wait_actor_count(rt, 0, 10000));

    /* Spawn until one new actor sits in the old slot. */
    tr_actor_id fresh[64];
    int reused = -1;
    for (uintptr_t i = 1; i < 64 && reused < 0; i++) {
        cr_assert_eq(tr_spawn(rt, &numbered, (void *)i, NULL, &fresh[i]), 0);
        if ((fresh[i].bits & 0xffffffu) == (old.bits & 0xffffffu)) { /* same slot index */
            reused = (int)i;
        }
    }
    cr_assert_geq(reused, 1, "the slot was never reused");
    cr_assert_neq(fresh[reused].bits, old.bits, "a new generation");
    cr_assert_eq(tr_send_copy(old, MSG_NUM, "x", 1), TR_ECLOSED);
    cr_assert_eq(tr_kill(old, 0), TR_ECLOSED, "a stale id cannot kill the new actor");
    cr_assert_eq(tr_send_copy(fresh[reused], MSG_NUM, "y", 1), 0);
    cr_assert(tr_test_wait_ge(&numbered_msgs, 1, 10000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_test_load(&numbered_msgs), 1);
    cr_assert_eq(numbered_seen[reused], 1, "the new actor got its own message");
    cr_assert_eq(numbered_seen[0], 0, "the dead one got nothing");
}

/* ---- kill ---- */

static int64_t killed_reason[2];
static uint64_t killed_n, killed_msgs;

static int killee_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

static void killee_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    (void)m;
    tr_test_add(&killed_msgs, 1);
}

static void killee_terminate(tr_actor *self, int reason)
{
    killed_reason[(uintptr_t)tr_actor_state(self)] = reason;
    tr_test_add(&killed_n, 1);
}

static const tr_behavior killee = {.name = "killee",
                                   .init = killee_init,
                                   .receive = killee_receive,
                                   .terminate = killee_terminate};

Test(actor, kill_overtakes_queued_messages_and_reports_its_reason)
{
    tr_runtime *rt = tr_test_runtime_ex(2, 0, false);
    tr_actor_id a, b;
    cr_assert_eq(tr_spawn(rt, &killee, (void *)0, NULL, &a), 0);
    cr_assert_eq(tr_spawn(rt, &killee, (void *)1, NULL, &b), 0);
    for (uint32_t i = 0; i < 10; i++) {
        cr_assert_eq(tr_send_copy(a, MSG_NUM, &i, sizeof(i)), 0);
        cr_assert_eq(tr_send_copy(b, MSG_NUM, &i, sizeof(i)), 0);
    }
    cr_assert_eq(tr_kill(a, 0), 0);
    cr_assert_eq(tr_kill(b, TR_EXIT_USER + 5), 0);
    cr_assert_eq(tr_runtime_start(rt), 0);
    cr_assert(tr_test_wait_ge(&killed_n, 2, 10000));
    cr_assert(tr_test_wait_actor_count(rt, 0, 10000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(killed_reason[0], TR_EXIT_KILLED, "reason 0 means killed");
    cr_assert_eq(killed_reason[1], TR_EXIT_USER + 5);
    cr_assert_eq(tr_test_load(&killed_msgs), 0, "the kill came before the queued messages");
}

/* ---- monitors ---- */

typedef struct watch {
    tr_actor_id target;
    int monitor_rc;
    uint64_t ref;
    uint64_t ready;
    uint64_t downs;
    int64_t reason;
    uint64_t from;
    uint64_t down_ref;
} watch;

static int watcher_init(tr_actor *self, void *arg)
{
    watch *w = arg;
    tr_actor_set_state(self, w);
    w->monitor_rc = tr_monitor(self, w->target, &w->ref);
    tr_test_store(&w->ready, 1);
    return 0;
}

static void watcher_receive(tr_actor *self, tr_msg *m)
{
    watch *w = tr_actor_state(self);
    if (tr_msg_type(m) == TR_MSG_DOWN) {
        w->reason = tr_msg_reason(m);
        w->from = tr_msg_from(m).bits;
        w->down_ref = tr_msg_ref(m);
        tr_test_add(&w->downs, 1);
    }
}

static const tr_behavior watcher = {
    .name = "watcher", .init = watcher_init, .receive = watcher_receive};

static uint64_t farewells;

static void victim_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_EXIT) {
        tr_exit(self, (int)i64_of(m));
    }
}

static void victim_terminate(tr_actor *self, int reason)
{
    (void)self;
    (void)reason;
    tr_test_add(&farewells, 1);
}

static const tr_behavior victim = {
    .name = "victim", .receive = victim_receive, .terminate = victim_terminate};

typedef enum { BY_EXIT, BY_KILL } how;

/* Spawns a victim and a watcher, waits until the monitor is in place, ends
 * the victim, and returns what the watcher saw. */
static void watch_exit(how h, int64_t reason, int64_t want)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id v, wid;
    cr_assert_eq(tr_spawn(rt, &victim, NULL, NULL, &v), 0);
    watch w = {.target = v};
    cr_assert_eq(tr_spawn(rt, &watcher, &w, NULL, &wid), 0);
    cr_assert(tr_test_wait_ge(&w.ready, 1, 10000));
    cr_assert_eq(w.monitor_rc, 0);
    if (h == BY_EXIT) {
        cr_assert_eq(send_i64(v, MSG_EXIT, reason), 0);
    } else {
        cr_assert_eq(tr_kill(v, (int)reason), 0);
    }
    cr_assert(tr_test_wait_ge(&w.downs, 1, 10000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_test_load(&w.downs), 1, "exactly one DOWN");
    cr_assert_eq(w.reason, want, "reason %lld", (long long)w.reason);
    cr_assert_eq(w.from, v.bits, "DOWN comes from the watched actor");
    cr_assert_eq(w.down_ref, w.ref, "DOWN carries the monitor reference");
    cr_assert_neq(w.ref, 0);
    cr_assert_eq(tr_test_load(&farewells), 1);
}

Test(actor, monitor_sees_normal_exit)
{
    watch_exit(BY_EXIT, TR_EXIT_NORMAL, TR_EXIT_NORMAL);
}

Test(actor, monitor_sees_a_user_reason)
{
    watch_exit(BY_EXIT, TR_EXIT_USER + 42, TR_EXIT_USER + 42);
}

Test(actor, monitor_sees_an_error_reason)
{
    watch_exit(BY_EXIT, TR_EMSGSIZE, TR_EMSGSIZE);
}

Test(actor, monitor_sees_killed)
{
    watch_exit(BY_KILL, 0, TR_EXIT_KILLED);
}

Test(actor, monitor_of_an_already_dead_target_gets_noproc)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id v, wid;
    cr_assert_eq(tr_spawn(rt, &victim, NULL, NULL, &v), 0);
    cr_assert_eq(send_i64(v, MSG_EXIT, 0), 0);
    cr_assert(tr_test_wait_actor_count(rt, 0, 10000));
    watch w = {.target = v};
    cr_assert_eq(tr_spawn(rt, &watcher, &w, NULL, &wid), 0);
    cr_assert(tr_test_wait_ge(&w.downs, 1, 10000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(w.monitor_rc, 0);
    cr_assert_eq(tr_test_load(&w.downs), 1);
    cr_assert_eq(w.reason, TR_EXIT_NOPROC);
    cr_assert_eq(w.from, v.bits);
    cr_assert_eq(w.down_ref, w.ref);
}

/* Demonitor: watcher and target share worker 0, so each runs its whole
 * turn before the other; after a DOWN, a self-sent CHECK is handled only
 * once every DOWN the target's exit produced has been handled. */
typedef struct demon {
    tr_actor_id target;
    uint64_t ref1, ref2;
    int demon_rc, demon_dead_rc;
    uint64_t downs, downs_ref1, downs_ref2;
    uint64_t checked;
} demon;

static int demon_init(tr_actor *self, void *arg)
{
    demon *d = arg;
    tr_actor_set_state(self, d);
    tr_monitor(self, d->target, &d->ref1);
    tr_monitor(self, d->target, &d->ref2);
    d->demon_rc = tr_demonitor(self, d->target, d->ref1);
    send_i64(d->target, MSG_EXIT, TR_EXIT_NORMAL);
    return 0;
}

static void demon_receive(tr_actor *self, tr_msg *m)
{
    demon *d = tr_actor_state(self);
    if (tr_msg_type(m) == TR_MSG_DOWN) {
        d->downs++;
        d->downs_ref1 += tr_msg_ref(m) == d->ref1;
        d->downs_ref2 += tr_msg_ref(m) == d->ref2;
        tr_send_copy(tr_self(self), MSG_CHECK, NULL, 0);
    } else if (tr_msg_type(m) == MSG_CHECK && !d->checked) {
        d->demon_dead_rc = tr_demonitor(self, d->target, d->ref2);
        tr_test_store(&d->checked, 1);
    }
}

static const tr_behavior demonitorer = {
    .name = "demon", .init = demon_init, .receive = demon_receive};

Test(actor, demonitor_stops_the_down_for_that_reference_only)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);
    opts.worker = 0;
    tr_actor_id v, wid;
    cr_assert_eq(tr_spawn(rt, &victim, NULL, &opts, &v), 0);
    demon d = {.target = v};
    cr_assert_eq(tr_spawn(rt, &demonitorer, &d, &opts, &wid), 0);
    cr_assert(tr_test_wait_ge(&d.checked, 1, 10000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(d.demon_rc, 0);
    cr_assert_neq(d.ref1, d.ref2);
    cr_assert_eq(d.downs, 1, "got %llu DOWNs", (unsigned long long)d.downs);
    cr_assert_eq(d.downs_ref2, 1);
    cr_assert_eq(d.downs_ref1, 0, "the demonitored reference got a DOWN");
    cr_assert_eq(d.demon_dead_rc, TR_ECLOSED, "demonitor of a dead target");
}

/* ---- init failure ---- */

static uint64_t failer_calls;

static int failing_init(tr_actor *self, void *arg)
{
    (void)self;
    (void)arg;
    return TR_ESTATE;
}

static void failer_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    (void)m;
    tr_test_add(&failer_calls, 1);
}

static void failer_terminate(tr_actor *self, int reason)
{
    (void)self;
    (void)reason;
    tr_test_add(&failer_calls, 100);
}

static const tr_behavior failer = {.name = "failer",
                                   .init = failing_init,
                                   .receive = failer_receive,
                                   .terminate = failer_terminate};

typedef struct spawner {
    uint64_t mref;
    uint64_t child;
    int send_rc;
    int64_t reason;
    uint64_t down_ref;
    uint64_t from;
    uint64_t done;
} spawner;

static spawner sp;

static int spawner_init(tr_actor *self, void *arg)
{
    (void)arg;
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);
    opts.monitor = true;
    opts.monitor_ref = &sp.mref;
    /* default placement from an actor: this worker, so it cannot run (and fail) before this init returns */
    tr_actor_id c;
    int rc = tr_spawn(tr_actor_runtime(self), &failer, NULL, &opts, &c);
    sp.child = c.bits;
    sp.send_rc = tr_send_copy(c, MSG_NUM, "x", 1);
    return rc;
}

static void spawner_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == TR_MSG_DOWN) {
        sp.reason = tr_msg_reason(m);
        sp.down_ref = tr_msg_ref(m);
        sp.from = tr_msg_from(m).bits;
        tr_test_store(&sp.done, 1);
    }
}

static const tr_behavior spawner_behavior = {
    .name = "spawner", .init = spawner_init, .receive = spawner_receive};

Test(actor, failed_init_exits_with_its_code_without_receive_or_terminate)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id p;
    cr_assert_eq(tr_spawn(rt, &spawner_behavior, NULL, NULL, &p), 0);
    cr_assert(tr_test_wait_ge(&sp.done, 1, 10000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(sp.send_rc, 0, "messages queue before init runs");
    cr_assert_eq(sp.reason, TR_ESTATE);
    cr_assert_eq(sp.down_ref, sp.mref);
    cr_assert_neq(sp.mref, 0, "monitor_ref was written at spawn");
    cr_assert_eq(sp.from, sp.child);
    cr_assert_eq(tr_test_load(&failer_calls), 0, "neither receive nor terminate ran");
}

/* ---- request / reply ---- */

enum { REQ_TIMEOUT_MS = 50 };

typedef struct rr {
    tr_actor_id server;
    int req_rc, req2_rc;
    uint64_t req, req2;
    uint64_t t0_ns;
    uint64_t replies, bad_replies, timeouts, late_replies_seen;
    int64_t timeout_elapsed_ns;
    uint64_t timeout_ref, timeout_from;
    int reply_rc, bad_reply_rc, late_reply_rc;
    uint64_t server_saw_request;
    tr_msg *held;
    uint64_t done;
} rr;

static rr R;

static void server_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_PING && (tr_msg_flags(m) & TR_MSGF_REQUEST)) {
        R.server_saw_request++;
        if (tr_msg_len(m) == 4 && memcmp(tr_msg_data(m), "hold", 4) == 0) {
            R.held = tr_msg_claim(self, m); /* answer later, too late */
            return;
        }
        R.reply_rc = tr_reply(self, m, tr_msg_new(MSG_PONG, "pong", 4));
    } else if (tr_msg_type(m) == MSG_PLAIN) {
        R.bad_reply_rc = tr_reply(self, m, tr_msg_new(MSG_PONG, "nope", 4));
    } else if (tr_msg_type(m) == MSG_GO && R.held != NULL) {
        R.late_reply_rc = tr_reply(self, R.held, tr_msg_new(MSG_PONG, "late", 4));
        tr_msg_free(R.held);
        R.held = NULL;
        /* Same sender, so FIFO: the late reply is ahead of this mark. */
        tr_send_copy(tr_msg_from(m), MSG_MARK, NULL, 0);
    }
}

static const tr_behavior server = {.name = "server", .receive = server_receive};

static int client_init(tr_actor *self, void *arg)
{
    const char *what = arg;
    R.t0_ns = tr_test_now_ns();
    R.req_rc = tr_request(self, R.server, tr_msg_new(MSG_PING, what, 4), REQ_TIMEOUT_MS, &R.req);
    if (R.req_rc < 0) {
        /* Wait past the deadline the request would have had, then look. */
        tr_send_after(self, tr_self(self), tr_msg_new(MSG_CHECK, NULL, 0), 4 * REQ_TIMEOUT_MS,
                      NULL);
    } else if (strcmp(what, "ping") == 0) {
        R.req2_rc =
            tr_request(self, R.server, tr_msg_new(MSG_PING, what, 4), REQ_TIMEOUT_MS, &R.req2);
        tr_send_copy(R.server, MSG_PLAIN, NULL, 0);
    }
    return 0;
}

static void client_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_flags(m) & TR_MSGF_REPLY) {
        R.replies++;
        if (tr_msg_type(m) != MSG_PONG || !tr_actor_id_eq(tr_msg_from(m), R.server) ||
            (tr_msg_ref(m) != R.req && tr_msg_ref(m) != R.req2) ||
            memcmp(tr_msg_data(m), "pong", 4) != 0) {
            R.bad_replies++;
        }
        if (R.replies == 2) {
            /* Wait past both request deadlines with a timer, then look. */
            tr_send_after(self, tr_self(self), tr_msg_new(MSG_CHECK, NULL, 0), 4 * REQ_TIMEOUT_MS,
                          NULL);
        }
    } else if (tr_msg_type(m) == TR_MSG_TIMEOUT) {
        R.timeouts++;
        R.timeout_elapsed_ns = (int64_t)(tr_test_now_ns() - R.t0_ns);
        R.timeout_ref = tr_msg_ref(m);
        R.timeout_from = tr_msg_from(m).bits;
        tr_send_copy(R.server, MSG_GO, NULL, 0);
    } else if (tr_msg_type(m) == MSG_MARK || tr_msg_type(m) == MSG_CHECK) {
        tr_test_store(&R.done, 1);
    }
}

static const tr_behavior client = {
    .name = "client", .init = client_init, .receive = client_receive};

static void run_client(const char *what, bool dead_server)
{
    tr_runtime *rt = tr_test_runtime(2);
    cr_assert_eq(tr_spawn(rt, &server, NULL, NULL, &R.server), 0);
    if (dead_server) {
        cr_assert_eq(tr_kill(R.server, 0), 0);
        cr_assert(tr_test_wait_actor_count(rt, 0, 10000));
    }
    tr_actor_id c;
    cr_assert_eq(tr_spawn(rt, &client, (void *)what, NULL, &c), 0);
    cr_assert(tr_test_wait_ge(&R.done, 1, 10000));
    tr_test_runtime_finish(rt);
}

Test(actor, request_gets_its_reply_by_id_and_no_timeout_follows)
{
    run_client("ping", false);
    cr_assert_eq(R.req_rc, 0);
    cr_assert_eq(R.req2_rc, 0);
    cr_assert_neq(R.req, R.req2, "request ids are distinct");
    cr_assert_eq(R.server_saw_request, 2);
    cr_assert_eq(R.reply_rc, 0);
    cr_assert_eq(R.replies, 2);
    cr_assert_eq(R.bad_replies, 0);
    cr_assert_eq(R.bad_reply_rc, TR_EINVAL, "tr_reply to a plain message");
    cr_assert_eq(R.timeouts, 0, "answered requests never time out");
}

Test(actor, request_times_out_never_early_and_the_late_reply_is_dropped)
{
    run_client("hold", false);
    cr_assert_eq(R.req_rc, 0);
    cr_assert_eq(R.timeouts, 1);
    cr_assert_eq(R.timeout_ref, R.req);
    cr_assert_eq(R.timeout_from, R.server.bits, "TIMEOUT names the asked actor");
    cr_assert_geq(R.timeout_elapsed_ns, (int64_t)REQ_TIMEOUT_MS * 1000000,
                  "timed out early: %lld ns", (long long)R.timeout_elapsed_ns);
    cr_assert_eq(R.late_reply_rc, 0, "the late reply was sent");
    cr_assert_eq(R.replies, 0, "and dropped before receive");
}

Test(actor, request_to_a_dead_actor_fails_and_no_timeout_follows)
{
    run_client("dead", true);
    cr_assert_eq(R.req_rc, TR_ECLOSED);
    cr_assert_eq(R.server_saw_request, 0);
    cr_assert_eq(R.timeouts, 0, "a refused request has no timeout");
}

/* ---- fairness, claim, size ---- */

static tr_test_log turns;

static int turn_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

static void turn_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_NUM) {
        tr_test_log_add(&turns, EV_MSG, (int32_t)(uintptr_t)tr_actor_state(self), u32_of(m));
    }
}

static const tr_behavior turner = {.name = "turner", .init = turn_init, .receive = turn_receive};

Test(actor, batch_limit_interleaves_busy_actors_on_one_worker)
{
    tr_test_log_init(&turns);
    tr_runtime *rt = tr_test_runtime_ex(1, 1, false); /* one worker, batch of 1 */
    tr_actor_id a, b;
    cr_assert_eq(tr_spawn(rt, &turner, (void *)1, NULL, &a), 0);
    cr_assert_eq(tr_spawn(rt, &turner, (void *)2, NULL, &b), 0);
    for (uint32_t i = 1; i <= 3; i++) {
        tr_send_copy(a, MSG_NUM, &i, sizeof(i));
        tr_send_copy(b, MSG_NUM, &i, sizeof(i));
    }
    cr_assert_eq(tr_runtime_start(rt), 0);
    cr_assert(tr_test_wait_ge(&turns.n, 6, 10000));
    tr_test_runtime_finish(rt);
    tr_test_event ev[6];
    cr_assert_eq(tr_test_log_get(&turns, ev, 6), 6);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(ev[i].who, 1 + i % 2, "turn %d went to actor %d", i, ev[i].who);
        cr_assert_eq(ev[i].val, 1 + i / 2);
    }
    tr_test_log_fini(&turns);
}

typedef struct fwd {
    tr_actor_id next;
    uintptr_t seen_ptr[2];
    uint64_t from_ok;
    uint64_t done;
} fwd;

static fwd F;

static void forwarder_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_NUM) {
        F.seen_ptr[0] = (uintptr_t)m;
        /* Keep it and pass the very same message on. */
        tr_send(F.next, tr_msg_claim(self, m));
    }
}

static void final_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == MSG_NUM) {
        F.seen_ptr[1] = (uintptr_t)m;
        F.from_ok = u32_of(m) == 99;
        tr_test_store(&F.done, 1);
    }
}

static const tr_behavior forwarder = {.name = "fwd", .receive = forwarder_receive};
static const tr_behavior final_stop = {.name = "final", .receive = final_receive};

Test(actor, claimed_message_is_forwarded_without_a_copy)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id a;
    cr_assert_eq(tr_spawn(rt, &final_stop, NULL, NULL, &F.next), 0);
    cr_assert_eq(tr_spawn(rt, &forwarder, NULL, NULL, &a), 0);
    uint32_t v = 99;
    cr_assert_eq(tr_send_copy(a, MSG_NUM, &v, sizeof(v)), 0);
    cr_assert(tr_test_wait_ge(&F.done, 1, 10000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(F.seen_ptr[0], F.seen_ptr[1], "the same message travelled on");
    cr_assert(F.from_ok);
    /* A double free of the claimed message would crash under ASan. */
}

Test(actor, an_idle_actor_costs_at_most_256_bytes)
{
    size_t cost = sizeof(struct tr_actor) + sizeof(tr__slot);
    cr_assert_leq(cost, 256, "actor %zu + slot %zu bytes", sizeof(struct tr_actor),
                  sizeof(tr__slot));
}
