/* Tests for backpressure between actors (runtime/route.c, "Actor
 * backpressure"): a sender to an overloaded mailbox is muted until the
 * mailbox drains; nothing is refused or lost; two actors flooding each
 * other never deadlock; a system message reaches a muted actor at once. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#include "rt.h"
#include "troupe/troupe.h"
#include "tsan_criterion.h"

TestSuite(backpressure, .timeout = 240.0);

enum { MSG_GO = TR_MSG_USER, MSG_ITEM, MSG_TICK };

#define FLOOD_N 300000u
#define CHUNK 200u

typedef struct flood {
    tr_actor_id consumer;
    uint64_t sent;      /* atomics */
    uint64_t received;  /* atomics */
    uint64_t max_ahead; /* producer only, read after the end */
    uint64_t refused;   /* atomics */
} flood;

static void consumer_receive(tr_actor *self, tr_msg *m)
{
    flood *f = tr_actor_state(self);
    if (tr_msg_type(m) == MSG_ITEM) {
        /* Slower than the producer: a little work per message. */
        volatile uint64_t x = 0;
        for (int i = 0; i < 1500; i++) {
            x += (uint64_t)i;
        }
        tr_test_add(&f->received, 1);
    }
}

static int state_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

static void producer_receive(tr_actor *self, tr_msg *m)
{
    flood *f = tr_actor_state(self);
    if (tr_msg_type(m) != MSG_GO) {
        return;
    }
    uint64_t sent = tr_test_load(&f->sent);
    for (unsigned i = 0; i < CHUNK && sent < FLOOD_N; i++, sent++) {
        if (tr_send_copy(f->consumer, MSG_ITEM, &sent, sizeof(sent)) != 0) {
            tr_test_add(&f->refused, 1);
        }
    }
    tr_test_store(&f->sent, sent);
    uint64_t ahead = sent - tr_test_load(&f->received);
    if (ahead > f->max_ahead) {
        f->max_ahead = ahead;
    }
    if (sent < FLOOD_N) {
        tr_send_copy(tr_self(self), MSG_GO, NULL, 0);
    }
}

static const tr_behavior consumer_b = {.name = "consumer", .init = state_init, .receive = consumer_receive};
static const tr_behavior producer_b = {.name = "producer", .init = state_init, .receive = producer_receive};

static void run_flood(int producer_worker, int consumer_worker)
{
    tr_runtime *rt = tr_test_runtime(2);
    flood f = {0};
    tr_spawn_opts o;
    tr_spawn_opts_defaults(&o);
    o.worker = consumer_worker;
    cr_assert_eq(tr_spawn(rt, &consumer_b, &f, &o, &f.consumer), 0);
    o.worker = producer_worker;
    tr_actor_id producer;
    cr_assert_eq(tr_spawn(rt, &producer_b, &f, &o, &producer), 0);
    cr_assert_eq(tr_send_copy(producer, MSG_GO, NULL, 0), 0);
    cr_assert(tr_test_wait_ge(&f.received, FLOOD_N, 60000), "received %llu of %u",
              (unsigned long long)tr_test_load(&f.received), FLOOD_N);
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_test_load(&f.refused), 0, "an unbounded mailbox refuses nothing");
    cr_assert_eq(tr_test_load(&f.received), FLOOD_N, "nothing lost, nothing twice");
    /* Without muting the producer would run the whole flood ahead of the
     * consumer (hundreds of thousands of messages). With it, it stops
     * about a thousand ahead; a worker descheduled for a while can let it
     * run further (messages wait in the worker's queue, not yet in the
     * mailbox), hence the generous bound. */
    cr_assert_lt(f.max_ahead, FLOOD_N / 3, "producer ran %llu messages ahead",
                 (unsigned long long)f.max_ahead);
}

Test(backpressure, a_fast_producer_on_the_same_worker_is_held_back)
{
    run_flood(0, 0);
}

Test(backpressure, a_fast_producer_on_another_worker_is_held_back)
{
    run_flood(0, 1);
}

/* Two actors that flood each other are both overloaded: an overloaded
 * actor is never muted, so neither waits for the other. */
typedef struct duel {
    tr_actor_id peer;
    uint64_t sent, got; /* atomics */
} duel;

static void duel_receive(tr_actor *self, tr_msg *m)
{
    duel *d = tr_actor_state(self);
    if (tr_msg_type(m) == MSG_ITEM) {
        tr_test_add(&d->got, 1);
        return;
    }
    if (tr_msg_type(m) != MSG_GO) {
        return;
    }
    uint64_t sent = tr_test_load(&d->sent);
    for (unsigned i = 0; i < 2000 && sent < FLOOD_N; i++, sent++) {
        tr_send_copy(d->peer, MSG_ITEM, NULL, 0);
    }
    tr_test_store(&d->sent, sent);
    if (sent < FLOOD_N) {
        tr_send_copy(tr_self(self), MSG_GO, NULL, 0);
    }
}

static const tr_behavior duel_b = {.name = "duel", .init = state_init, .receive = duel_receive};

Test(backpressure, two_actors_flooding_each_other_both_finish)
{
    for (int placement = 0; placement < 2; placement++) {
        tr_runtime *rt = tr_test_runtime(2);
        duel a = {0}, b = {0};
        tr_spawn_opts o;
        tr_spawn_opts_defaults(&o);
        o.worker = 0;
        tr_actor_id ia, ib;
        cr_assert_eq(tr_spawn(rt, &duel_b, &a, &o, &ia), 0);
        o.worker = placement;
        cr_assert_eq(tr_spawn(rt, &duel_b, &b, &o, &ib), 0);
        a.peer = ib;
        b.peer = ia;
        cr_assert_eq(tr_send_copy(ia, MSG_GO, NULL, 0), 0);
        cr_assert_eq(tr_send_copy(ib, MSG_GO, NULL, 0), 0);
        cr_assert(tr_test_wait_ge(&a.got, FLOOD_N, 60000), "a got %llu",
                  (unsigned long long)tr_test_load(&a.got));
        cr_assert(tr_test_wait_ge(&b.got, FLOOD_N, 60000), "b got %llu",
                  (unsigned long long)tr_test_load(&b.got));
        tr_test_runtime_finish(rt);
    }
}

/* A producer muted by a consumer that never drains still gets its kill:
 * system messages never wait. */
typedef struct stuck {
    uint64_t release; /* atomics: the consumer may go on */
    uint64_t entered; /* atomics */
} stuck;

static void stuck_receive(tr_actor *self, tr_msg *m)
{
    stuck *s = tr_actor_state(self);
    if (tr_msg_type(m) == MSG_ITEM && tr_test_load(&s->entered) == 0) {
        tr_test_store(&s->entered, 1);
        /* Blocks its worker until released: its mailbox only grows. */
        while (tr_test_load(&s->release) == 0) {
            sched_yield();
        }
    }
}

typedef struct pusher {
    tr_actor_id to;
    uint64_t turns; /* atomics */
} pusher;

static void pusher_receive(tr_actor *self, tr_msg *m)
{
    pusher *p = tr_actor_state(self);
    if (tr_msg_type(m) != MSG_GO) {
        return;
    }
    tr_test_add(&p->turns, 1);
    for (unsigned i = 0; i < CHUNK; i++) {
        tr_send_copy(p->to, MSG_ITEM, NULL, 0);
    }
    tr_send_copy(tr_self(self), MSG_GO, NULL, 0);
}

static const tr_behavior stuck_b = {.name = "stuck", .init = state_init, .receive = stuck_receive};
static const tr_behavior pusher_b = {.name = "pusher", .init = state_init, .receive = pusher_receive};

static bool is_gone(void *arg)
{
    tr_actor_id *id = arg;
    return tr_send_copy(*id, MSG_ITEM, NULL, 0) == TR_ECLOSED;
}

Test(backpressure, a_muted_actor_still_gets_its_kill)
{
    tr_runtime *rt = tr_test_runtime(2);
    stuck s = {0};
    pusher p = {0};
    tr_spawn_opts o;
    tr_spawn_opts_defaults(&o);
    o.worker = 1;
    cr_assert_eq(tr_spawn(rt, &stuck_b, &s, &o, &p.to), 0);
    o.worker = 0;
    tr_actor_id pid;
    cr_assert_eq(tr_spawn(rt, &pusher_b, &p, &o, &pid), 0);
    cr_assert_eq(tr_send_copy(pid, MSG_GO, NULL, 0), 0);
    cr_assert(tr_test_wait_ge(&s.entered, 1, 10000));
    /* Unmuted, the pusher would take a thousand turns in milliseconds; muted
     * by the stuck actor's overload, it takes a handful. */
    cr_assert_not(tr_test_wait_ge(&p.turns, 1000, 2000), "the pusher was never muted (%llu turns)",
                  (unsigned long long)tr_test_load(&p.turns));
    cr_assert_eq(tr_kill(pid, TR_EXIT_USER), 0);
    cr_assert(tr_test_wait_until(is_gone, &pid, 10000), "the muted actor never got its kill");
    tr_test_store(&s.release, 1);
    tr_test_runtime_finish(rt);
}

/* Two actors that flood each other while foreign threads flood both: each
 * may be muted on the other and then become overloaded itself; an
 * overloaded actor is unmuted at once, so both always finish. (The
 * foreign floods are bounded: an actor kept overloaded forever by threads
 * that are never held back keeps its senders muted, by design.) */
#define FOREIGN_N 200000u

typedef struct flood_both {
    tr_actor_id a, b;
    uint64_t stop; /* atomics */
} flood_both;

static void *foreign_flood(void *arg)
{
    flood_both *fb = arg;
    for (unsigned i = 0; i < FOREIGN_N && !tr_test_load(&fb->stop); i++) {
        tr_send_copy((i & 1) ? fb->a : fb->b, MSG_TICK, NULL, 0);
        if ((i & 1023) == 0) {
            sched_yield();
        }
    }
    return NULL;
}

Test(backpressure, mutual_floods_with_foreign_floods_never_stall)
{
    for (int round = 0; round < 3; round++) {
        tr_runtime *rt = tr_test_runtime(2);
        duel a = {0}, b = {0};
        tr_spawn_opts o;
        tr_spawn_opts_defaults(&o);
        o.worker = 0;
        tr_actor_id ia, ib;
        cr_assert_eq(tr_spawn(rt, &duel_b, &a, &o, &ia), 0);
        o.worker = 1;
        cr_assert_eq(tr_spawn(rt, &duel_b, &b, &o, &ib), 0);
        a.peer = ib;
        b.peer = ia;
        flood_both fb = {ia, ib, 0};
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(pthread_create(&th[i], NULL, foreign_flood, &fb), 0);
        }
        cr_assert_eq(tr_send_copy(ia, MSG_GO, NULL, 0), 0);
        cr_assert_eq(tr_send_copy(ib, MSG_GO, NULL, 0), 0);
        bool done = tr_test_wait_ge(&a.got, FLOOD_N, 90000) && tr_test_wait_ge(&b.got, FLOOD_N, 90000);
        tr_test_store(&fb.stop, 1);
        for (int i = 0; i < 2; i++) {
            pthread_join(th[i], NULL);
        }
        if (!done) {
            tr_runtime_shutdown(rt, 1000); /* stop the workers before the stack goes */
            tr_runtime_free(rt);
        }
        cr_assert(done, "round %d: a got %llu, b got %llu", round,
                  (unsigned long long)tr_test_load(&a.got), (unsigned long long)tr_test_load(&b.got));
        tr_test_runtime_finish(rt);
    }
}
