/* troupe-actors: Savina-style actor kernels for troupe.
 *
 *   troupe-actors [KERNEL] [--workers N]
 *
 * KERNEL is one of pingpong, counting, forkjoin, threadring, spawn; with
 * none, every kernel runs. Only when named: `idle` starts the runtime,
 * leaves it idle for 10 s and reports the CPU time it used; `handoff`
 * measures the machine's floor for a cross-thread round trip (two threads
 * spinning on two cache lines, no runtime at all). Each kernel gets a fresh runtime, checks its own
 * result (exit status 1 on a wrong one) and ends with a line
 *
 *   RESULT impl=troupe kernel=K [placement=P] workers=W n=N wall_s=..
 *          cpu_s=.. per_s=.. max_rss_kb=..        (one line)
 *
 * which test/bench/run-actors.sh parses; test/bench/ref/ holds the same
 * kernels for Erlang/OTP and CAF, with the same shapes and sizes, so the
 * numbers can be compared run for run. Only the public API is used.
 *
 * Shapes (identical in the references). Every kernel's actors are spawned
 * from inside an actor; placement=default leaves their worker to the
 * runtime (a child goes on its spawner's worker, as in Erlang and CAF),
 * the other placements pin them explicitly:
 * - pingpong: one round trip = ping -> pong -> ping, 1,000,000 of them;
 *   placement=default and placement=cross (ping on worker 0, pong on 1).
 * - counting: a producer actor sends 10,000,000 increments to a counter
 *   actor, then asks for the count; the counter replies with it.
 *   placement=default and placement=spread (producer 0, counter 1).
 * - forkjoin: a driver actor sends 100,000 rounds of one message to each of
 *   60 actors; every message costs a sin() (Savina's performComputation);
 *   each actor reports when it has its 100,000. placement=default and
 *   placement=spread (actor i on worker i mod W).
 * - threadring: 503 actors in a ring pass a token 10,000,000 hops
 *   (placement=default); with actor i on worker i mod W, so every hop
 *   crosses workers (placement=spread), 1,000,000 hops only: the rate is
 *   steady, so the shorter run gives the same per_s.
 * - spawn: a parent actor spawns 1,000,000 children (default placement),
 *   at most 1,000 alive at once: it spawns 1,000, sends each its index, and
 *   spawns the next one for every answer; a child answers and exits.
 *   (Spawning in unbounded bursts instead makes CAF 0.17 quadratic: its
 *   work stealing walks the victim's whole queue, see docs/benchmarks.md.)
 * Producers (counting, forkjoin) send in chunks and then message
 * themselves to continue, so that the actors sharing their worker get a
 * turn (Erlang would preempt them anyway).
 * Every message is freshly allocated, as in the references (no forwarding
 * of the received message with tr_msg_claim). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "troupe/troupe.h"

#define PINGPONG_N 1000000u
#define COUNTING_N 10000000u
#define FORKJOIN_ACTORS 60u
#define FORKJOIN_N 100000u
#define RING_ACTORS 503u
#define RING_HOPS 10000000u
#define RING_HOPS_SPREAD 1000000u /* every hop crosses workers: see the top */
#define SPAWN_N 1000000u
#define SPAWN_WINDOW 1000u   /* children alive at most at once */
#define CHUNK 1000u          /* counting: messages per producer turn */
#define FORKJOIN_ROUNDS 100u /* rounds (of 60 messages) per driver turn */
#define KERNEL_TIMEOUT_S 300 /* a hung kernel fails instead of blocking make bench */

enum {
    MSG_START = TR_MSG_USER,
    MSG_CONTINUE,
    MSG_PING,
    MSG_PONG,
    MSG_INC,
    MSG_GET,
    MSG_COUNT,
    MSG_WORK,
    MSG_DONE,
    MSG_TOKEN,
    MSG_GO,
    MSG_ACK
};

/* ---- completion: one actor reports, the main thread waits ---- */

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static int done_flag;
static int done_ok;

static void done_reset(void)
{
    pthread_mutex_lock(&done_lock);
    done_flag = 0;
    done_ok = 0;
    pthread_mutex_unlock(&done_lock);
}

static void done_signal(int ok)
{
    pthread_mutex_lock(&done_lock);
    done_flag = 1;
    done_ok = ok;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
}

/* Returns 1 if the kernel finished and verified its result, 0 otherwise. */
static int done_wait(void)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += KERNEL_TIMEOUT_S;
    pthread_mutex_lock(&done_lock);
    while (!done_flag) {
        if (pthread_cond_timedwait(&done_cond, &done_lock, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    int ok = done_flag && done_ok;
    if (!done_flag) {
        fprintf(stderr, "kernel timed out after %d s\n", KERNEL_TIMEOUT_S);
    }
    pthread_mutex_unlock(&done_lock);
    return ok;
}

/* ---- measurement ---- */

typedef struct meter {
    double wall0, cpu0;
} meter;

static double now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* User plus system time of the whole process (every thread). */
static double now_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss; /* kilobytes on Linux */
}

static void meter_start(meter *m)
{
    m->cpu0 = now_cpu();
    m->wall0 = now_wall();
}

static void report(const meter *m, const char *kernel, const char *placement, unsigned workers,
                   uint64_t n, const char *unit)
{
    double wall = now_wall() - m->wall0;
    double cpu = now_cpu() - m->cpu0;
    double per_s = (double)n / wall;
    printf("troupe %s%s%s: %" PRIu64 " %s in %.3f s wall, %.3f s cpu (%.0f/s)\n", kernel,
           placement ? " " : "", placement ? placement : "", n, unit, wall, cpu, per_s);
    printf("RESULT impl=troupe kernel=%s%s%s workers=%u n=%" PRIu64
           " wall_s=%.4f cpu_s=%.4f per_s=%.0f max_rss_kb=%ld\n",
           kernel, placement ? " placement=" : "", placement ? placement : "", workers, n, wall,
           cpu, per_s, max_rss_kb());
    fflush(stdout);
}

static tr_runtime *runtime_up(unsigned workers)
{
    tr_runtime_config cfg;
    tr_runtime_config_defaults(&cfg);
    cfg.workers = workers;
    int err;
    tr_runtime *rt = tr_runtime_new(&cfg, &err);
    if (rt == NULL) {
        fprintf(stderr, "tr_runtime_new: %s\n", tr_strerror(err));
        exit(1);
    }
    if ((err = tr_runtime_start(rt)) < 0) {
        fprintf(stderr, "tr_runtime_start: %s\n", tr_strerror(err));
        exit(1);
    }
    done_reset();
    return rt;
}

/* Shuts the runtime down; every kernel actor must exit cleanly. */
static int runtime_down(tr_runtime *rt)
{
    int rc = tr_runtime_shutdown(rt, 10000);
    if (rc < 0) {
        fprintf(stderr, "tr_runtime_shutdown: %s\n", tr_strerror(rc));
    }
    tr_runtime_free(rt);
    return rc == 0;
}

static tr_actor_id spawn_on(tr_runtime *rt, const tr_behavior *b, void *arg, int worker)
{
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);
    opts.worker = worker;
    tr_actor_id id;
    int rc = tr_spawn(rt, b, arg, &opts, &id);
    if (rc < 0) {
        fprintf(stderr, "tr_spawn: %s\n", tr_strerror(rc));
        exit(1);
    }
    return id;
}

/* Runs fn(arg) inside an actor on a worker, and waits for it: spawns made
 * there with the default placement go where the runtime puts an actor's
 * children (its own worker), as the references' kernels spawn from a
 * process of theirs. Explicit workers pin, wherever they are asked from. */
typedef struct setup_call {
    void (*fn)(void *arg);
    void *arg;
} setup_call;

static pthread_mutex_t setup_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t setup_cond = PTHREAD_COND_INITIALIZER;
static int setup_done;

static void setup_receive(tr_actor *self, tr_msg *m)
{
    setup_call call;
    memcpy(&call, tr_msg_data(m), sizeof(call));
    call.fn(call.arg);
    tr_exit(self, TR_EXIT_NORMAL);
    pthread_mutex_lock(&setup_lock);
    setup_done = 1;
    pthread_cond_signal(&setup_cond);
    pthread_mutex_unlock(&setup_lock);
}

static const tr_behavior setup_b = {.name = "setup", .receive = setup_receive};

static void setup_in_actor(tr_runtime *rt, void (*fn)(void *), void *arg)
{
    setup_call call = {fn, arg};
    tr_actor_id root = spawn_on(rt, &setup_b, NULL, 0);
    pthread_mutex_lock(&setup_lock);
    setup_done = 0;
    pthread_mutex_unlock(&setup_lock);
    if (tr_send_copy(root, MSG_START, &call, sizeof(call)) < 0) {
        fprintf(stderr, "setup: send failed\n");
        exit(1);
    }
    pthread_mutex_lock(&setup_lock);
    while (!setup_done) {
        pthread_cond_wait(&setup_cond, &setup_lock);
    }
    pthread_mutex_unlock(&setup_lock);
}

/* Sends a message with a 64-bit payload (or none). Failing to send is a
 * failed kernel: report it and stop. */
static void send_u64(tr_actor_id to, uint32_t type, uint64_t v)
{
    int rc = tr_send_copy(to, type, &v, sizeof(v));
    if (rc < 0) {
        fprintf(stderr, "tr_send: %s\n", tr_strerror(rc));
        done_signal(0);
    }
}

static uint64_t msg_u64(const tr_msg *m)
{
    uint64_t v = 0;
    if (tr_msg_len(m) == sizeof(v)) {
        memcpy(&v, tr_msg_data(m), sizeof(v));
    }
    return v;
}

static tr_actor_id msg_id(const tr_msg *m)
{
    tr_actor_id id = TR_ACTOR_NONE;
    if (tr_msg_len(m) == sizeof(id)) {
        memcpy(&id, tr_msg_data(m), sizeof(id));
    }
    return id;
}

/* ---- pingpong ---- */

static uint64_t ping_left; /* the ping actor's only state */

static void pong_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_PING) {
        send_u64(tr_msg_from(m), MSG_PONG, msg_u64(m));
    }
}

static void ping_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_START) {
        ping_left = PINGPONG_N;
        send_u64(msg_id(m), MSG_PING, ping_left);
        return;
    }
    if (tr_msg_type(m) != MSG_PONG) {
        return;
    }
    if (msg_u64(m) != ping_left) {
        fprintf(stderr, "pingpong: pong %" PRIu64 ", expected %" PRIu64 "\n", msg_u64(m),
                ping_left);
        done_signal(0);
        return;
    }
    if (--ping_left == 0) {
        done_signal(1);
        return;
    }
    send_u64(tr_msg_from(m), MSG_PING, ping_left);
}

static const tr_behavior ping_b = {.name = "ping", .receive = ping_receive};
static const tr_behavior pong_b = {.name = "pong", .receive = pong_receive};

typedef struct pp_setup {
    tr_runtime *rt;
    int ping_worker, pong_worker;
    tr_actor_id ping, pong;
} pp_setup;

static void pingpong_setup(void *arg)
{
    pp_setup *p = arg;
    p->ping = spawn_on(p->rt, &ping_b, NULL, p->ping_worker);
    p->pong = spawn_on(p->rt, &pong_b, NULL, p->pong_worker);
}

static int run_pingpong_at(unsigned workers, const char *placement, int ping_worker,
                           int pong_worker)
{
    tr_runtime *rt = runtime_up(workers);
    pp_setup ps = {rt, ping_worker, pong_worker, TR_ACTOR_NONE, TR_ACTOR_NONE};
    setup_in_actor(rt, pingpong_setup, &ps);
    tr_actor_id ping = ps.ping, pong = ps.pong;
    meter m;
    meter_start(&m);
    tr_send_copy(ping, MSG_START, &pong, sizeof(pong));
    int ok = done_wait();
    if (ok) {
        report(&m, "pingpong", placement, workers, PINGPONG_N, "round trips");
    }
    return runtime_down(rt) && ok;
}

static int run_pingpong(unsigned workers)
{
    int ok = run_pingpong_at(workers, "default", -1, -1);
    if (workers < 2) {
        printf("troupe pingpong cross: skipped (needs 2 workers)\n");
        return ok;
    }
    return run_pingpong_at(workers, "cross", 0, 1) && ok;
}

/* ---- counting ---- */

typedef struct producer {
    tr_actor_id counter;
    uint64_t sent;
} producer;

static producer the_producer;
static uint64_t counter_value;

static void counter_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_INC) {
        counter_value++;
    } else if (tr_msg_type(m) == MSG_GET) {
        send_u64(tr_msg_from(m), MSG_COUNT, counter_value);
    }
}

static void producer_receive(tr_actor *self, tr_msg *m)
{
    producer *p = &the_producer;
    if (tr_msg_type(m) == MSG_START) {
        p->counter = msg_id(m);
        p->sent = 0;
    } else if (tr_msg_type(m) == MSG_COUNT) {
        uint64_t got = msg_u64(m);
        if (got != COUNTING_N) {
            fprintf(stderr, "counting: counter has %" PRIu64 ", expected %u\n", got, COUNTING_N);
        }
        done_signal(got == COUNTING_N);
        return;
    } else if (tr_msg_type(m) != MSG_CONTINUE) {
        return;
    }
    for (unsigned i = 0; i < CHUNK && p->sent < COUNTING_N; i++, p->sent++) {
        send_u64(p->counter, MSG_INC, 1);
    }
    if (p->sent < COUNTING_N) {
        send_u64(tr_self(self), MSG_CONTINUE, 0);
    } else {
        send_u64(p->counter, MSG_GET, 0);
    }
}

static const tr_behavior producer_b = {.name = "producer", .receive = producer_receive};
static const tr_behavior counter_b = {.name = "counter", .receive = counter_receive};

static void counting_setup(void *arg)
{
    pp_setup *p = arg;
    p->ping = spawn_on(p->rt, &producer_b, NULL, p->ping_worker);
    p->pong = spawn_on(p->rt, &counter_b, NULL, p->pong_worker);
}

static int run_counting_at(unsigned workers, const char *placement, int producer_worker,
                           int counter_worker)
{
    tr_runtime *rt = runtime_up(workers);
    counter_value = 0;
    pp_setup ps = {rt, producer_worker, counter_worker, TR_ACTOR_NONE, TR_ACTOR_NONE};
    setup_in_actor(rt, counting_setup, &ps);
    tr_actor_id producer_id = ps.ping, counter_id = ps.pong;
    meter m;
    meter_start(&m);
    tr_send_copy(producer_id, MSG_START, &counter_id, sizeof(counter_id));
    int ok = done_wait();
    if (ok) {
        report(&m, "counting", placement, workers, COUNTING_N, "messages");
    }
    return runtime_down(rt) && ok;
}

static int run_counting(unsigned workers)
{
    int ok = run_counting_at(workers, "default", -1, -1);
    if (workers < 2) {
        return ok;
    }
    return run_counting_at(workers, "spread", 0, 1) && ok;
}

/* ---- forkjoin (throughput) ---- */

typedef struct fj_worker {
    uint64_t got;
    double sink;
} fj_worker;

static fj_worker fj_workers[FORKJOIN_ACTORS];
static tr_actor_id fj_ids[FORKJOIN_ACTORS];
static uint64_t fj_rounds_sent;
static unsigned fj_done;

/* Savina's performComputation(37.2): a sin() whose result is checked. */
static int perform_computation(double theta, double *sink)
{
    double s = sin(theta);
    double r = s * s;
    *sink += r;
    return r > 0;
}

static void fj_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) != MSG_WORK) {
        return;
    }
    fj_worker *w = tr_actor_state(self);
    if (!perform_computation(37.2, &w->sink)) {
        done_signal(0);
        return;
    }
    if (++w->got == FORKJOIN_N) {
        send_u64(tr_msg_from(m), MSG_DONE, 0);
    }
}

static int fj_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

static void fj_driver_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_DONE) {
        if (++fj_done == FORKJOIN_ACTORS) {
            int ok = 1;
            for (unsigned i = 0; i < FORKJOIN_ACTORS; i++) {
                ok &= fj_workers[i].got == FORKJOIN_N;
            }
            done_signal(ok);
        }
        return;
    }
    if (tr_msg_type(m) != MSG_START && tr_msg_type(m) != MSG_CONTINUE) {
        return;
    }
    for (unsigned r = 0; r < FORKJOIN_ROUNDS && fj_rounds_sent < FORKJOIN_N; r++) {
        for (unsigned i = 0; i < FORKJOIN_ACTORS; i++) {
            send_u64(fj_ids[i], MSG_WORK, 0);
        }
        fj_rounds_sent++;
    }
    if (fj_rounds_sent < FORKJOIN_N) {
        send_u64(tr_self(self), MSG_CONTINUE, 0);
    }
}

static const tr_behavior fj_b = {.name = "fj", .init = fj_init, .receive = fj_receive};
static const tr_behavior fj_driver_b = {.name = "fj_driver", .receive = fj_driver_receive};

typedef struct fj_setup {
    tr_runtime *rt;
    unsigned spread; /* 0: default placement; else the worker count to spread over */
    tr_actor_id driver;
} fj_setup;

static void forkjoin_setup(void *arg)
{
    fj_setup *f = arg;
    f->driver = spawn_on(f->rt, &fj_driver_b, NULL, f->spread ? 0 : -1);
    for (unsigned i = 0; i < FORKJOIN_ACTORS; i++) {
        fj_ids[i] = spawn_on(f->rt, &fj_b, &fj_workers[i], f->spread ? (int)(i % f->spread) : -1);
    }
}

static int run_forkjoin_at(unsigned workers, const char *placement, unsigned spread)
{
    tr_runtime *rt = runtime_up(workers);
    memset(fj_workers, 0, sizeof(fj_workers));
    fj_rounds_sent = 0;
    fj_done = 0;
    fj_setup fs = {rt, spread, TR_ACTOR_NONE};
    setup_in_actor(rt, forkjoin_setup, &fs);
    tr_actor_id driver = fs.driver;
    meter m;
    meter_start(&m);
    send_u64(driver, MSG_START, 0);
    int ok = done_wait();
    if (ok) {
        report(&m, "forkjoin", placement, workers, (uint64_t)FORKJOIN_ACTORS * FORKJOIN_N,
               "messages");
    }
    return runtime_down(rt) && ok;
}

static int run_forkjoin(unsigned workers)
{
    int ok = run_forkjoin_at(workers, "default", 0);
    if (workers < 2) {
        return ok;
    }
    return run_forkjoin_at(workers, "spread", workers) && ok;
}

/* ---- threadring ---- */

static tr_actor_id ring[RING_ACTORS];

static void ring_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) != MSG_TOKEN) {
        return;
    }
    uint64_t left = msg_u64(m);
    if (left == 0) {
        done_signal(1);
        return;
    }
    unsigned index = (unsigned)(uintptr_t)tr_actor_state(self);
    send_u64(ring[(index + 1) % RING_ACTORS], MSG_TOKEN, left - 1);
}

static int ring_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

static const tr_behavior ring_b = {.name = "ring", .init = ring_init, .receive = ring_receive};

typedef struct ring_setup {
    tr_runtime *rt;
    unsigned spread; /* 0: default placement; else the worker count to spread over */
} ring_setup;

static void threadring_setup(void *arg)
{
    ring_setup *r = arg;
    for (unsigned i = 0; i < RING_ACTORS; i++) {
        ring[i] = spawn_on(r->rt, &ring_b, (void *)(uintptr_t)i,
                           r->spread ? (int)(i % r->spread) : -1);
    }
}

static int run_threadring_at(unsigned workers, const char *placement, unsigned spread,
                             uint64_t hops)
{
    tr_runtime *rt = runtime_up(workers);
    ring_setup rs = {rt, spread};
    setup_in_actor(rt, threadring_setup, &rs);
    meter m;
    meter_start(&m);
    /* The ring[] writes happen before this send, which publishes them. */
    send_u64(ring[0], MSG_TOKEN, hops);
    int ok = done_wait();
    if (ok) {
        report(&m, "threadring", placement, workers, hops, "hops");
    }
    return runtime_down(rt) && ok;
}

static int run_threadring(unsigned workers)
{
    int ok = run_threadring_at(workers, "default", 0, RING_HOPS);
    if (workers < 2) {
        return ok;
    }
    return run_threadring_at(workers, "spread", workers, RING_HOPS_SPREAD) && ok;
}

/* ---- spawn ---- */

typedef struct parent {
    uint64_t spawned, acked, sum;
} parent;

static parent the_parent;

static void child_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_GO) {
        send_u64(tr_msg_from(m), MSG_ACK, msg_u64(m));
        tr_exit(self, TR_EXIT_NORMAL);
    }
}

static const tr_behavior child_b = {.name = "child", .receive = child_receive};

/* Spawns the next child (default placement) and sends it its index. */
static int spawn_child(tr_actor *self, parent *p)
{
    tr_actor_id child;
    int rc = tr_spawn(tr_actor_runtime(self), &child_b, NULL, NULL, &child);
    if (rc < 0) {
        fprintf(stderr, "spawn: tr_spawn: %s\n", tr_strerror(rc));
        done_signal(0);
        return rc;
    }
    send_u64(child, MSG_GO, p->spawned++);
    return 0;
}

static void parent_receive(tr_actor *self, tr_msg *m)
{
    parent *p = &the_parent;
    if (tr_msg_type(m) == MSG_START) {
        for (unsigned i = 0; i < SPAWN_WINDOW && i < SPAWN_N; i++) {
            if (spawn_child(self, p) < 0) {
                return;
            }
        }
        return;
    }
    if (tr_msg_type(m) != MSG_ACK) {
        return;
    }
    p->sum += msg_u64(m);
    if (p->spawned < SPAWN_N && spawn_child(self, p) < 0) {
        return;
    }
    if (++p->acked == SPAWN_N) {
        uint64_t want = (uint64_t)SPAWN_N * (SPAWN_N - 1) / 2;
        if (p->sum != want) {
            fprintf(stderr, "spawn: ack sum %" PRIu64 ", expected %" PRIu64 "\n", p->sum, want);
        }
        done_signal(p->sum == want);
    }
}

static const tr_behavior parent_b = {.name = "parent", .receive = parent_receive};

static int run_spawn(unsigned workers)
{
    tr_runtime *rt = runtime_up(workers);
    memset(&the_parent, 0, sizeof(the_parent));
    tr_actor_id parent_id = spawn_on(rt, &parent_b, NULL, -1);
    meter m;
    meter_start(&m);
    send_u64(parent_id, MSG_START, 0);
    int ok = done_wait();
    if (ok) {
        report(&m, "spawn", NULL, workers, SPAWN_N, "actors");
    }
    /* Every child must be gone once the parent is: 1 actor left. */
    uint64_t live = tr_runtime_actor_count(rt);
    for (int i = 0; i < 1000 && live > 1; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        live = tr_runtime_actor_count(rt);
    }
    if (live != 1) {
        fprintf(stderr, "spawn: %" PRIu64 " actors still alive, expected 1\n", live);
        ok = 0;
    }
    return runtime_down(rt) && ok;
}

/* ---- idle: what a started runtime with nothing to do costs ---- */

#define IDLE_S 10

static int run_idle(unsigned workers)
{
    tr_runtime *rt = runtime_up(workers);
    meter m;
    meter_start(&m);
    struct timespec ts = {IDLE_S, 0};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    double cpu = now_cpu() - m.cpu0, wall = now_wall() - m.wall0;
    printf("troupe idle: %u workers, %.3f s cpu in %.1f s wall (%.3f%% of one CPU)\n", workers,
           cpu, wall, 100.0 * cpu / wall);
    printf("RESULT impl=troupe kernel=idle workers=%u wall_s=%.4f cpu_s=%.4f cpu_pct=%.3f\n",
           workers, wall, cpu, 100.0 * cpu / wall);
    return runtime_down(rt);
}

/* ---- handoff: the machine's floor for a cross-thread round trip ---- */

/* Two threads pass a counter back and forth through two cache lines,
 * spinning: no runtime, no queue, no message. Whatever a runtime does to
 * hand a message to another worker costs at least this per round trip. */
#define HANDOFF_N 2000000u

static _Alignas(64) uint64_t handoff_ping;
static _Alignas(64) uint64_t handoff_pong;

static void *handoff_peer(void *arg)
{
    (void)arg;
    for (uint64_t i = 1; i <= HANDOFF_N; i++) {
        while (__atomic_load_n(&handoff_ping, __ATOMIC_ACQUIRE) != i) {
            __builtin_ia32_pause();
        }
        __atomic_store_n(&handoff_pong, i, __ATOMIC_RELEASE);
    }
    return NULL;
}

static int run_handoff(unsigned workers)
{
    (void)workers;
    pthread_t t;
    if (pthread_create(&t, NULL, handoff_peer, NULL) != 0) {
        return 0;
    }
    meter m;
    meter_start(&m);
    for (uint64_t i = 1; i <= HANDOFF_N; i++) {
        __atomic_store_n(&handoff_ping, i, __ATOMIC_RELEASE);
        while (__atomic_load_n(&handoff_pong, __ATOMIC_ACQUIRE) != i) {
            __builtin_ia32_pause();
        }
    }
    report(&m, "handoff", NULL, 2, HANDOFF_N, "round trips");
    pthread_join(t, NULL);
    return 1;
}

/* ---- main ---- */

typedef struct kernel {
    const char *name;
    int (*run)(unsigned workers);
} kernel;

static const kernel kernels[] = {
    {"pingpong", run_pingpong},     {"counting", run_counting}, {"forkjoin", run_forkjoin},
    {"threadring", run_threadring}, {"spawn", run_spawn},
};

#define NKERNELS (sizeof(kernels) / sizeof(kernels[0]))

/* Run only when named. */
static const kernel extra_kernels[] = {{"idle", run_idle}, {"handoff", run_handoff}};

static void usage(void)
{
    fprintf(stderr, "usage: troupe-actors [pingpong|counting|forkjoin|threadring|spawn|idle|handoff] "
                    "[--workers N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    unsigned workers = 2;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end != '\0' || n < 1 || n > 1024) {
                usage();
            }
            workers = (unsigned)n;
        } else if (argv[i][0] != '-' && only == NULL) {
            only = argv[i];
        } else {
            usage();
        }
    }
    int failed = 0, ran = 0;
    for (size_t k = 0; k < NKERNELS; k++) {
        if (only != NULL && strcmp(only, kernels[k].name) != 0) {
            continue;
        }
        ran++;
        if (!kernels[k].run(workers)) {
            fprintf(stderr, "troupe-actors: kernel %s FAILED\n", kernels[k].name);
            failed = 1;
        }
    }
    for (size_t k = 0; only != NULL && k < sizeof(extra_kernels) / sizeof(extra_kernels[0]); k++) {
        if (strcmp(only, extra_kernels[k].name) == 0) {
            ran++;
            failed |= !extra_kernels[k].run(workers);
        }
    }
    if (ran == 0) {
        usage();
    }
    return failed;
}
