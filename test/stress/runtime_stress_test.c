/* Stress tests for the runtime, through the public API only: forced
 * shutdown under cross-worker traffic, kill storms with monitors, spawn and
 * exit churn with sends to stale ids, and foreign threads sending to actors
 * that exit.
 *
 * Each test repeats its race for a bounded time: new rounds start until at
 * least a minimum has run and the time budget is spent. Worker callbacks
 * only record into atomics; the test thread asserts after bounded waits.
 * Every message a send accepted must be received or freed, so the leak
 * check at the end of each test fails on a lost one under AddressSanitizer. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "leak.h"
#include "rounds.h"
#include "rt.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(runtime_stress, .timeout = 120.0);

enum { MSG_TICK = TR_MSG_USER, MSG_PING, MSG_DIE };

/* xorshift64: each actor or thread keeps its own state (rand() is not
 * thread-safe, and rand_r() is taken in TSan builds: tsan_criterion.h). */
static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* Records an unexpected return code: counted, and the first one kept. */
static void note_bad(uint64_t *bad, uint64_t *first, int rc)
{
    if (__atomic_fetch_add(bad, 1, __ATOMIC_SEQ_CST) == 0) {
        tr_test_store(first, (uint64_t)(int64_t)rc);
    }
}

static int tick(tr_actor *self)
{
    return tr_send_copy(tr_self(self), MSG_TICK, NULL, 0);
}

static void ignore_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    (void)m;
}

/* ---- forced shutdown under cross-worker traffic ---- */

enum { TRAPPERS = 2000 };

typedef struct flood {
    const tr_actor_id *targets; /* written before the flooder is spawned */
    size_t n;
    size_t next;     /* the flooder's own: where the next tick goes on */
    uint64_t passes; /* atomics: passes over every target */
    uint64_t bad;    /* atomics: a send returned neither 0 nor TR_ECLOSED */
    uint64_t first_bad;
} flood;

static int trapper_init(tr_actor *self, void *arg)
{
    (void)arg;
    tr_actor_trap_shutdown(self, true); /* only the deadline ends it */
    return 0;
}

static const tr_behavior trapper = {
    .name = "trapper", .init = trapper_init, .receive = ignore_receive};

static int flood_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    tr_actor_trap_shutdown(self, true); /* keeps sending up to the deadline */
    return tick(self);
}

/* Each tick sends to the next FLOOD_CHUNK targets, newest first, then a
 * tick to itself, so the worker's loop turns between chunks (the runtime's
 * batch is 1: a turn is one tick). Newest first: a forced exit that walks
 * a worker's actors newest first then meets the sends more often, and the
 * race reproduced more often that way under ASan. */
enum { FLOOD_CHUNK = 100 };

static void flood_receive(tr_actor *self, tr_msg *m)
{
    flood *f = tr_actor_state(self);
    if (tr_msg_type(m) != MSG_TICK) {
        return;
    }
    for (size_t k = 0; k < FLOOD_CHUNK; k++) {
        size_t i = f->n - 1 - f->next;
        int rc = tr_send_copy(f->targets[i], MSG_PING, &i, sizeof(i));
        if (rc != 0 && rc != TR_ECLOSED) {
            note_bad(&f->bad, &f->first_bad, rc);
        }
        if (++f->next == f->n) {
            f->next = 0;
            tr_test_add(&f->passes, 1);
        }
    }
    int rc = tick(self);
    if (rc != 0) {
        note_bad(&f->bad, &f->first_bad, rc);
    }
}

static const tr_behavior flooder = {
    .name = "flooder", .init = flood_init, .receive = flood_receive};

Test(runtime_stress, forced_shutdown_under_cross_worker_traffic_frees_cleanly)
{
    static tr_actor_id ids[TRAPPERS];
    unsigned leftover_round = 0;
    uint64_t leftover = 0;
    rounds r = rounds_begin(10, 5000);
    while (rounds_next(&r)) {
        tr_runtime *rt = tr_test_runtime_ex(2, 1, true);
        tr_spawn_opts opts;
        tr_spawn_opts_defaults(&opts);
        opts.worker = 1;
        for (size_t i = 0; i < TRAPPERS; i++) {
            cr_assert_eq(tr_spawn(rt, &trapper, NULL, &opts, &ids[i]), 0);
        }
        flood f = {.targets = ids, .n = TRAPPERS};
        opts.worker = 0;
        tr_actor_id fid;
        cr_assert_eq(tr_spawn(rt, &flooder, &f, &opts, &fid), 0);
        /* Traffic runs for a few passes before the deadline hits it. */
        cr_assert(tr_test_wait_ge(&f.passes, 3, 10000), "round %u: no pass was made", r.done);
        cr_assert_eq(tr_runtime_shutdown(rt, 1), TR_ETIMEDOUT,
                     "round %u: trapping actors outlive a 1 ms shutdown", r.done);
        cr_assert_eq(tr_runtime_stop(rt), 0);
        /* Checked after the rounds: going on gives AddressSanitizer the
         * chance to name what happened to the missing actor. */
        uint64_t left = tr_runtime_actor_count(rt);
        if (left != 0 && leftover_round == 0) {
            leftover_round = r.done;
            leftover = left;
        }
        tr_runtime_free(rt);
        cr_assert_eq(tr_test_load(&f.bad), 0, "round %u: a send returned %s", r.done,
                     tr_strerror((int)(int64_t)tr_test_load(&f.first_bad)));
        for (size_t i = 0; i < TRAPPERS; i += 97) {
            cr_assert_eq(tr_send_copy(ids[i], MSG_PING, NULL, 0), TR_ECLOSED,
                         "a handle outlives its runtime");
        }
    }
    cr_log_info("%u rounds", r.done);
    cr_assert_eq(leftover_round, 0, "round %u: %llu actors left after tr_runtime_stop",
                 leftover_round, (unsigned long long)leftover);
    tr_test_leak_check();
}

/* ---- kill storms with monitors ---- */

enum { VICTIMS = 200, KILLERS = 4, WATCHERS = 2, KILL_REASON = TR_EXIT_USER + 7 };

typedef struct storm storm;

typedef struct storm_actor {
    storm *s;
    unsigned idx;
    uint64_t rng; /* the actor's own */
} storm_actor;

struct storm {
    tr_actor_id ids[VICTIMS]; /* written before any message flows */
    storm_actor victims[VICTIMS];
    storm_actor watchers[WATCHERS];
    storm_actor killers[KILLERS];
    uint64_t downs[WATCHERS][VICTIMS]; /* atomics: DOWNs per watcher and victim */
    uint64_t total_downs[WATCHERS];    /* atomics */
    uint64_t monitoring;               /* atomics: watchers with every monitor in place */
    uint64_t kills;                    /* atomics: tr_kill calls that returned 0 */
    uint64_t traffic;                  /* atomics: pings the victims received */
    uint64_t stop;                     /* atomics: killers exit at their next tick */
    uint64_t bad;                      /* atomics: unexpected code, reason or DOWN */
    uint64_t first_bad;
};

static void storm_check(storm *s, int rc)
{
    if (rc != 0 && rc != TR_ECLOSED) {
        note_bad(&s->bad, &s->first_bad, rc);
    }
}

static int storm_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

/* Counts a ping and passes it on to a random victim while its hop count
 * lasts; now and then exits on its own. */
static void victim_receive(tr_actor *self, tr_msg *m)
{
    storm_actor *v = tr_actor_state(self);
    if (tr_msg_type(m) != MSG_PING) {
        return;
    }
    tr_test_add(&v->s->traffic, 1);
    uint32_t hops;
    memcpy(&hops, tr_msg_data(m), sizeof(hops));
    uint64_t x = rnd(&v->rng);
    if (x % 97 == 0) {
        tr_exit(self, TR_EXIT_NORMAL);
        return;
    }
    if (hops > 0) {
        hops--;
        storm_check(v->s,
                    tr_send_copy(v->s->ids[(x >> 8) % VICTIMS], MSG_PING, &hops, sizeof(hops)));
    }
}

static const tr_behavior victim = {.name = "victim", .init = storm_init, .receive = victim_receive};

static int storm_watch_init(tr_actor *self, void *arg)
{
    storm_actor *w = arg;
    tr_actor_set_state(self, w);
    for (unsigned i = 0; i < VICTIMS; i++) {
        int rc = tr_monitor(self, w->s->ids[i], NULL);
        if (rc != 0) {
            note_bad(&w->s->bad, &w->s->first_bad, rc);
        }
    }
    tr_test_add(&w->s->monitoring, 1);
    return 0;
}

static void storm_watch_receive(tr_actor *self, tr_msg *m)
{
    storm_actor *w = tr_actor_state(self);
    storm *s = w->s;
    if (tr_msg_type(m) != TR_MSG_DOWN) {
        return;
    }
    unsigned i = 0;
    while (i < VICTIMS && !tr_actor_id_eq(s->ids[i], tr_msg_from(m))) {
        i++;
    }
    if (i == VICTIMS) {
        note_bad(&s->bad, &s->first_bad, -1); /* a DOWN from nobody watched */
        return;
    }
    int64_t reason = tr_msg_reason(m);
    /* NOPROC: the victim died before this watcher's MONITOR reached it
     * (monitors are set up while the killers already run). */
    if (reason != TR_EXIT_KILLED && reason != KILL_REASON && reason != TR_EXIT_NORMAL &&
        reason != TR_EXIT_NOPROC) {
        note_bad(&s->bad, &s->first_bad, (int)reason);
    }
    tr_test_add(&s->downs[w->idx][i], 1);
    tr_test_add(&s->total_downs[w->idx], 1);
}

static const tr_behavior storm_watcher = {
    .name = "storm_watcher", .init = storm_watch_init, .receive = storm_watch_receive};

static int killer_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return tick(self);
}

/* Per tick: eight pings with four hops each to random victims, and on
 * average half a kill of a random victim. */
static void killer_receive(tr_actor *self, tr_msg *m)
{
    storm_actor *k = tr_actor_state(self);
    storm *s = k->s;
    if (tr_msg_type(m) != MSG_TICK) {
        return;
    }
    if (tr_test_load(&s->stop)) {
        tr_exit(self, TR_EXIT_NORMAL);
        return;
    }
    for (int i = 0; i < 8; i++) {
        uint64_t x = rnd(&k->rng);
        uint32_t hops = 4;
        storm_check(s, tr_send_copy(s->ids[x % VICTIMS], MSG_PING, &hops, sizeof(hops)));
        if ((x >> 40) % 16 == 0) {
            int rc = tr_kill(s->ids[(x >> 16) % VICTIMS], (x & 1) ? 0 : KILL_REASON);
            if (rc == 0) {
                tr_test_add(&s->kills, 1);
            }
            storm_check(s, rc);
        }
    }
    storm_check(s, tick(self));
}

static const tr_behavior killer = {
    .name = "killer", .init = killer_init, .receive = killer_receive};

static uint64_t total_downs(storm *s, unsigned w)
{
    return tr_test_load(&s->total_downs[w]);
}

Test(runtime_stress, kill_storm_gives_every_monitor_exactly_one_down)
{
    rounds r = rounds_begin(5, 1000);
    while (rounds_next(&r)) {
        storm *s = calloc(1, sizeof(*s));
        cr_assert_not_null(s);
        tr_runtime *rt = tr_test_runtime(2);
        tr_spawn_opts opts;
        tr_spawn_opts_defaults(&opts);
        for (unsigned i = 0; i < VICTIMS; i++) {
            s->victims[i] = (storm_actor){s, i, 0x9e3779b97f4a7c15ull * (i + 1) + r.done};
            opts.worker = (int)(i % 2);
            cr_assert_eq(tr_spawn(rt, &victim, &s->victims[i], &opts, &s->ids[i]), 0);
        }
        for (unsigned w = 0; w < WATCHERS; w++) {
            s->watchers[w] = (storm_actor){s, w, 1};
            opts.worker = (int)(w % 2);
            tr_actor_id id;
            cr_assert_eq(tr_spawn(rt, &storm_watcher, &s->watchers[w], &opts, &id), 0);
        }
        cr_assert(tr_test_wait_ge(&s->monitoring, WATCHERS, 10000), "monitors never in place");
        for (unsigned k = 0; k < KILLERS; k++) {
            s->killers[k] = (storm_actor){s, k, 0xd1b54a32d192ed03ull * (k + 1) + r.done};
            opts.worker = (int)(k % 2);
            tr_actor_id id;
            cr_assert_eq(tr_spawn(rt, &killer, &s->killers[k], &opts, &id), 0);
        }
        /* The storm runs until half the victims are gone. */
        cr_assert(tr_test_wait_ge(&s->total_downs[0], VICTIMS / 2, 10000),
                  "round %u: only %llu victims died", r.done,
                  (unsigned long long)total_downs(s, 0));
        tr_test_store(&s->stop, 1);
        for (unsigned i = 0; i < VICTIMS; i++) {
            int rc = tr_kill(s->ids[i], 0);
            cr_assert(rc == 0 || rc == TR_ECLOSED, "tr_kill: %s", tr_strerror(rc));
        }
        for (unsigned w = 0; w < WATCHERS; w++) {
            cr_assert(tr_test_wait_ge(&s->total_downs[w], VICTIMS, 10000),
                      "round %u: watcher %u saw %llu of %d DOWNs", r.done, w,
                      (unsigned long long)total_downs(s, w), VICTIMS);
        }
        cr_assert(tr_test_wait_actor_count(rt, WATCHERS, 10000),
                  "round %u: %llu actors live, want the %d watchers", r.done,
                  (unsigned long long)tr_runtime_actor_count(rt), WATCHERS);
        tr_test_runtime_finish(rt);
        /* Workers joined: no DOWN can arrive any more, so counts are final. */
        cr_assert_eq(tr_test_load(&s->bad), 0, "round %u: unexpected code or reason %lld", r.done,
                     (long long)(int64_t)tr_test_load(&s->first_bad));
        for (unsigned w = 0; w < WATCHERS; w++) {
            cr_assert_eq(total_downs(s, w), VICTIMS);
            for (unsigned i = 0; i < VICTIMS; i++) {
                cr_assert_eq(tr_test_load(&s->downs[w][i]), 1,
                             "round %u: watcher %u got %llu DOWNs for victim %u", r.done, w,
                             (unsigned long long)tr_test_load(&s->downs[w][i]), i);
            }
        }
        cr_assert_gt(tr_test_load(&s->kills), 0, "the killers killed nobody");
        cr_assert_gt(tr_test_load(&s->traffic), 0, "no traffic flowed");
        free(s);
    }
    cr_log_info("%u rounds", r.done);
    tr_test_leak_check();
}

/* ---- spawn/exit churn with sends to stale ids ---- */

enum { RING = 1024, CHURN_SPAWNS = 3000, CHURN_THREADS = 2 };

typedef struct churn {
    uint64_t ring[RING]; /* atomics: ids of short-lived actors, newest over oldest */
    uint64_t next;       /* atomics: next ring slot */
    uint64_t stop;       /* atomics: spawners, senders and threads stop */
    uint64_t spawned, accepted, refused, received; /* atomics */
    uint64_t bad, first_bad;                       /* atomics */
} churn;

typedef struct churner {
    churn *c;
    uint64_t rng; /* owner's own */
} churner;

/* Exits as soon as init returns. */
static int vanish_init(tr_actor *self, void *arg)
{
    (void)arg;
    tr_exit(self, TR_EXIT_NORMAL);
    return 0;
}

/* Fails its init: exits with that code. */
static int refuse_init(tr_actor *self, void *arg)
{
    (void)self;
    (void)arg;
    return TR_EINVAL;
}

/* Exits at its first MSG_DIE, sent in init: pings queued before init ran
 * are received, later ones are freed unread. */
static int linger_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return tr_send_copy(tr_self(self), MSG_DIE, NULL, 0);
}

static void linger_receive(tr_actor *self, tr_msg *m)
{
    churn *c = tr_actor_state(self);
    if (tr_msg_type(m) == MSG_PING) {
        tr_test_add(&c->received, 1);
    } else if (tr_msg_type(m) == MSG_DIE) {
        tr_exit(self, TR_EXIT_NORMAL);
    }
}

static const tr_behavior vanish = {
    .name = "vanish", .init = vanish_init, .receive = ignore_receive};
static const tr_behavior refuse = {
    .name = "refuse", .init = refuse_init, .receive = ignore_receive};
static const tr_behavior linger = {
    .name = "linger", .init = linger_init, .receive = linger_receive};

static void churn_send(churn *c, uint64_t *rng)
{
    uint64_t x = rnd(rng);
    tr_actor_id to = {tr_test_load(&c->ring[x % RING])};
    if (tr_actor_id_is_none(to)) {
        return;
    }
    int rc = (x >> 32) & 1 ? tr_send_copy(to, MSG_PING, &x, sizeof(x))
                           : tr_send(to, tr_msg_new(MSG_PING, &x, sizeof(x)));
    if (rc == 0) {
        tr_test_add(&c->accepted, 1);
    } else if (rc == TR_ECLOSED) {
        tr_test_add(&c->refused, 1);
    } else {
        note_bad(&c->bad, &c->first_bad, rc);
    }
}

static int churner_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return tick(self);
}

static void spawner_receive(tr_actor *self, tr_msg *m)
{
    churner *s = tr_actor_state(self);
    churn *c = s->c;
    if (tr_msg_type(m) != MSG_TICK) {
        return;
    }
    if (tr_test_load(&c->stop)) {
        tr_exit(self, TR_EXIT_NORMAL);
        return;
    }
    static const tr_behavior *const kinds[3] = {&vanish, &refuse, &linger};
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);
    /* default placement from an actor: this worker */
    for (int i = 0; i < 8; i++) {
        tr_actor_id id;
        int rc = tr_spawn(tr_actor_runtime(self), kinds[rnd(&s->rng) % 3], c, &opts, &id);
        if (rc != 0) {
            note_bad(&c->bad, &c->first_bad, rc);
            continue;
        }
        uint64_t slot = __atomic_fetch_add(&c->next, 1, __ATOMIC_SEQ_CST) % RING;
        tr_test_store(&c->ring[slot], id.bits);
        tr_test_add(&c->spawned, 1);
    }
    int rc = tick(self);
    if (rc != 0) {
        note_bad(&c->bad, &c->first_bad, rc);
    }
}

static void sender_receive(tr_actor *self, tr_msg *m)
{
    churner *s = tr_actor_state(self);
    if (tr_msg_type(m) != MSG_TICK) {
        return;
    }
    if (tr_test_load(&s->c->stop)) {
        tr_exit(self, TR_EXIT_NORMAL);
        return;
    }
    for (int i = 0; i < 16; i++) {
        churn_send(s->c, &s->rng);
    }
    int rc = tick(self);
    if (rc != 0) {
        note_bad(&s->c->bad, &s->c->first_bad, rc);
    }
}

static const tr_behavior spawner = {
    .name = "spawner", .init = churner_init, .receive = spawner_receive};
static const tr_behavior churn_sender = {
    .name = "churn_sender", .init = churner_init, .receive = sender_receive};

static void *churn_thread(void *arg)
{
    churner *t = arg;
    for (unsigned i = 1; !tr_test_load(&t->c->stop); i++) {
        churn_send(t->c, &t->rng);
        if ((i & 63) == 0) {
            sched_yield(); /* two cores: leave the workers room */
        }
    }
    return NULL;
}

Test(runtime_stress, spawn_exit_churn_with_stale_sends_drains_to_zero)
{
    rounds r = rounds_begin(5, 1000);
    uint64_t tried = 0; /* a round may end before its senders ran: count them all */
    while (rounds_next(&r)) {
        churn *c = calloc(1, sizeof(*c));
        cr_assert_not_null(c);
        tr_runtime *rt = tr_test_runtime(2);
        churner actors[4], threads[CHURN_THREADS];
        tr_spawn_opts opts;
        tr_spawn_opts_defaults(&opts);
        for (int i = 0; i < 4; i++) {
            actors[i] = (churner){c, 0x2545f4914f6cdd1dull * (uint64_t)(i + 1) + r.done};
            opts.worker = i % 2;
            tr_actor_id id;
            cr_assert_eq(tr_spawn(rt, i < 2 ? &spawner : &churn_sender, &actors[i], &opts, &id), 0);
        }
        pthread_t th[CHURN_THREADS];
        for (int i = 0; i < CHURN_THREADS; i++) {
            threads[i] = (churner){c, 0x94d049bb133111ebull * (uint64_t)(i + 1) + r.done};
            cr_assert_eq(pthread_create(&th[i], NULL, churn_thread, &threads[i]), 0);
        }
        bool spawned = tr_test_wait_ge(&c->spawned, CHURN_SPAWNS, 10000);
        tr_test_store(&c->stop, 1);
        for (int i = 0; i < CHURN_THREADS; i++) {
            pthread_join(th[i], NULL);
        }
        cr_assert(spawned, "round %u: only %llu spawns", r.done,
                  (unsigned long long)tr_test_load(&c->spawned));
        cr_assert(tr_test_wait_actor_count(rt, 0, 10000), "round %u: %llu actors never left",
                  r.done, (unsigned long long)tr_runtime_actor_count(rt));
        tr_test_runtime_finish(rt);
        cr_assert_eq(tr_test_load(&c->bad), 0, "round %u: a call returned %s", r.done,
                     tr_strerror((int)(int64_t)tr_test_load(&c->first_bad)));
        uint64_t accepted = tr_test_load(&c->accepted), received = tr_test_load(&c->received);
        tried += accepted + tr_test_load(&c->refused);
        cr_assert_leq(received, accepted, "round %u: %llu received of %llu accepted", r.done,
                      (unsigned long long)received, (unsigned long long)accepted);
        for (unsigned i = 0; i < RING; i++) {
            tr_actor_id id = {c->ring[i]};
            cr_assert_eq(tr_send_copy(id, MSG_PING, NULL, 0), TR_ECLOSED, "long dead id %u", i);
        }
        free(c);
    }
    cr_assert_gt(tried, 0, "no send was tried");
    cr_log_info("%u rounds", r.done);
    /* Every accepted message was received or freed: */
    tr_test_leak_check();
}

/* ---- foreign threads sending while the workers exit actors ---- */

enum { TARGETS = 16, EXIT_AFTER = 500, SENDERS = 4 };

typedef struct seq_msg {
    uint32_t sender;
    uint32_t seq; /* 1, 2, ... per sender and target, counting accepted sends */
} seq_msg;

typedef struct target {
    uint64_t received;          /* atomics: written by the actor only */
    uint64_t after_exit;        /* atomics: messages received after tr_exit */
    uint64_t out_of_order;      /* atomics: a sender's messages not in order */
    uint64_t terminated;        /* atomics */
    uint32_t last_seq[SENDERS]; /* the actor's own */
    bool exited;                /* the actor's own */
} target;

typedef struct hammer {
    target t[TARGETS];
    tr_actor_id ids[TARGETS];            /* written before the senders start */
    uint64_t accepted[SENDERS][TARGETS]; /* each sender its row; read after join */
    uint64_t bad, first_bad;             /* atomics */
    uint64_t timed_out;                  /* atomics */
} hammer;

typedef struct hammer_arg {
    hammer *h;
    uint32_t idx;
} hammer_arg;

static int target_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

static void target_receive(tr_actor *self, tr_msg *m)
{
    target *t = tr_actor_state(self);
    if (tr_msg_type(m) != MSG_PING) {
        return;
    }
    if (t->exited) {
        tr_test_add(&t->after_exit, 1);
        return;
    }
    seq_msg s;
    memcpy(&s, tr_msg_data(m), sizeof(s));
    if (s.sender >= SENDERS || s.seq != t->last_seq[s.sender] + 1) {
        tr_test_add(&t->out_of_order, 1);
    } else {
        t->last_seq[s.sender] = s.seq;
    }
    tr_test_add(&t->received, 1);
    if (tr_test_load(&t->received) == EXIT_AFTER) {
        t->exited = true;
        tr_exit(self, TR_EXIT_NORMAL);
    }
}

static void target_terminate(tr_actor *self, int reason)
{
    (void)reason;
    target *t = tr_actor_state(self);
    tr_test_add(&t->terminated, 1);
}

static const tr_behavior target_behavior = {.name = "target",
                                            .init = target_init,
                                            .receive = target_receive,
                                            .terminate = target_terminate};

/* Sends to every target in turn until each has refused one send (it has
 * exited), alternating tr_send_copy and tr_send. */
static void *hammer_thread(void *arg)
{
    hammer_arg *a = arg;
    hammer *h = a->h;
    bool open[TARGETS];
    uint32_t seq[TARGETS];
    unsigned left = TARGETS;
    for (unsigned j = 0; j < TARGETS; j++) {
        open[j] = true;
        seq[j] = 0;
    }
    uint64_t deadline = tr_test_now_ms() + 15000;
    for (unsigned pass = 0; left > 0; pass++) {
        if ((pass & 255) == 0 && tr_test_now_ms() > deadline) {
            tr_test_add(&h->timed_out, 1);
            break;
        }
        for (unsigned j = 0; j < TARGETS; j++) {
            if (!open[j]) {
                continue;
            }
            seq_msg s = {a->idx, seq[j] + 1};
            int rc = (s.seq & 1) ? tr_send_copy(h->ids[j], MSG_PING, &s, sizeof(s))
                                 : tr_send(h->ids[j], tr_msg_new(MSG_PING, &s, sizeof(s)));
            if (rc == 0) {
                seq[j]++;
                h->accepted[a->idx][j]++;
            } else if (rc == TR_ECLOSED) {
                open[j] = false;
                left--;
            } else {
                note_bad(&h->bad, &h->first_bad, rc);
            }
        }
    }
    return NULL;
}

Test(runtime_stress, foreign_sends_to_exiting_actors_are_received_in_order_or_refused)
{
    rounds r = rounds_begin(10, 500);
    while (rounds_next(&r)) {
        hammer *h = calloc(1, sizeof(*h));
        cr_assert_not_null(h);
        tr_runtime *rt = tr_test_runtime(2);
        tr_spawn_opts opts;
        tr_spawn_opts_defaults(&opts);
        for (unsigned j = 0; j < TARGETS; j++) {
            opts.worker = (int)(j % 2);
            cr_assert_eq(tr_spawn(rt, &target_behavior, &h->t[j], &opts, &h->ids[j]), 0);
        }
        pthread_t th[SENDERS];
        hammer_arg args[SENDERS];
        for (uint32_t i = 0; i < SENDERS; i++) {
            args[i] = (hammer_arg){h, i};
            cr_assert_eq(pthread_create(&th[i], NULL, hammer_thread, &args[i]), 0);
        }
        for (unsigned i = 0; i < SENDERS; i++) {
            pthread_join(th[i], NULL);
        }
        cr_assert_eq(tr_test_load(&h->timed_out), 0, "round %u: targets never exited", r.done);
        cr_assert_eq(tr_test_load(&h->bad), 0, "round %u: a send returned %s", r.done,
                     tr_strerror((int)(int64_t)tr_test_load(&h->first_bad)));
        cr_assert(tr_test_wait_actor_count(rt, 0, 10000), "round %u: %llu actors left", r.done,
                  (unsigned long long)tr_runtime_actor_count(rt));
        for (unsigned j = 0; j < TARGETS; j++) {
            target *t = &h->t[j];
            uint64_t accepted = 0;
            for (unsigned i = 0; i < SENDERS; i++) {
                accepted += h->accepted[i][j];
            }
            cr_assert_eq(tr_test_load(&t->received), EXIT_AFTER, "round %u target %u: %llu", r.done,
                         j, (unsigned long long)tr_test_load(&t->received));
            cr_assert_eq(tr_test_load(&t->after_exit), 0, "round %u target %u: after exit", r.done,
                         j);
            cr_assert_eq(tr_test_load(&t->out_of_order), 0, "round %u target %u: out of order",
                         r.done, j);
            cr_assert_eq(tr_test_load(&t->terminated), 1);
            cr_assert_geq(accepted, EXIT_AFTER, "round %u target %u: %llu accepted", r.done, j,
                          (unsigned long long)accepted);
        }
        tr_test_runtime_finish(rt);
        free(h);
    }
    cr_log_info("%u rounds", r.done);
    /* Accepted past the exit means freed unread; ASan sees any that was not. */
    tr_test_leak_check();
}
