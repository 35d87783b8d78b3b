/* Tests for runtime/runtime.c and runtime/worker.c: configuration,
 * lifecycle, graceful and forced shutdown, calls refused on workers, and
 * an idle runtime staying idle. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(runtime, .timeout = 60.0);

enum { MSG_NUM = TR_MSG_USER, MSG_CALL, MSG_STOP, MSG_LATER };

/* ---- configuration ---- */

Test(runtime, config_defaults_are_the_documented_values)
{
    tr_runtime_config cfg;
    memset(&cfg, 0x5a, sizeof(cfg));
    tr_runtime_config_defaults(&cfg);
    cr_assert_eq(cfg.workers, 0);
    cr_assert_eq(cfg.batch, 64);
    cr_assert_eq(cfg.spin_us, 50);
}

Test(runtime, default_worker_count_is_one_per_online_cpu)
{
    int err = 1;
    tr_runtime *rt = tr_runtime_new(NULL, &err);
    cr_assert_not_null(rt);
    cr_assert_eq(err, 0);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cr_assert_eq(tr_runtime_workers(rt), (unsigned)(cpus > 0 ? cpus : 1));
    cr_assert_not(tr_runtime_is_running(rt));
    tr_runtime_free(rt);
}

Test(runtime, invalid_config_returns_null_with_einval)
{
    tr_runtime_config cfg;
    int err = 0;
    tr_runtime_config_defaults(&cfg);
    cfg.workers = 1025;
    cr_assert_null(tr_runtime_new(&cfg, &err));
    cr_assert_eq(err, TR_EINVAL);
    tr_runtime_config_defaults(&cfg);
    cfg.spin_us = 1000001;
    err = 0;
    cr_assert_null(tr_runtime_new(&cfg, &err));
    cr_assert_eq(err, TR_EINVAL);
}

Test(runtime, free_null_is_a_noop)
{
    tr_runtime_free(NULL);
}

/* ---- lifecycle ---- */

static uint64_t got;

static void count_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == MSG_NUM) {
        tr_test_add(&got, 1);
    }
}

static const tr_behavior counter = {.name = "counter", .receive = count_receive};

Test(runtime, lifecycle_states_and_refusals)
{
    tr_runtime *rt = tr_test_runtime_ex(2, 0, false);
    cr_assert_eq(tr_runtime_workers(rt), 2);
    cr_assert_not(tr_runtime_is_running(rt));
    cr_assert_eq(tr_runtime_shutdown(rt, 100), TR_ESTATE, "not started");
    cr_assert_eq(tr_runtime_start(rt), 0);
    cr_assert(tr_runtime_is_running(rt));
    cr_assert_eq(tr_runtime_start(rt), TR_ESTATE, "already started");
    cr_assert_eq(tr_runtime_shutdown(rt, 1000), 0);
    cr_assert_not(tr_runtime_is_running(rt));
    cr_assert_eq(tr_runtime_shutdown(rt, 1000), TR_ESTATE, "shutdown twice");
    cr_assert_eq(tr_runtime_start(rt), TR_ESTATE, "no restart");
    cr_assert_eq(tr_runtime_stop(rt), 0);
    cr_assert_eq(tr_runtime_stop(rt), 0, "stop is idempotent");
    cr_assert_not(tr_runtime_is_running(rt));
    tr_runtime_free(rt);
}

Test(runtime, actors_spawned_before_start_run_once_started)
{
    tr_runtime *rt = tr_test_runtime_ex(2, 0, false);
    tr_actor_id ids[10];
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(tr_spawn(rt, &counter, NULL, NULL, &ids[i]), 0);
        for (int k = 0; k < 5; k++) {
            cr_assert_eq(tr_send_copy(ids[i], MSG_NUM, NULL, 0), 0);
        }
    }
    cr_assert_eq(tr_runtime_actor_count(rt), 10);
    cr_assert_eq(tr_test_load(&got), 0, "nothing runs before start");
    cr_assert_eq(tr_runtime_start(rt), 0);
    cr_assert(tr_test_wait_ge(&got, 50, 10000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_test_load(&got), 50);
}

static uint64_t inits, terms, terms_on_worker, receives;
static int64_t term_reason[256];
static tr_runtime *current_rt;

static int tracked_init(tr_actor *self, void *arg)
{
    void *state = malloc(32); /* freed by terminate: ASan checks */
    if (state == NULL) {
        return TR_ENOMEM;
    }
    tr_actor_set_state(self, state);
    (void)arg;
    tr_test_add(&inits, 1);
    return 0;
}

static void tracked_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) != TR_MSG_SHUTDOWN) {
        tr_test_add(&receives, 1);
    }
}

static uint64_t term_slots;

static void tracked_terminate(tr_actor *self, int reason)
{
    free(tr_actor_state(self));
    if (tr_runtime_on_worker(current_rt)) {
        tr_test_add(&terms_on_worker, 1);
    }
    uint64_t i = __atomic_fetch_add(&term_slots, 1, __ATOMIC_SEQ_CST);
    if (i < 256) {
        term_reason[i] = reason;
    }
    tr_test_add(&terms, 1); /* after the reason: waiters on terms see it */
}

static const tr_behavior tracked = {.name = "tracked",
                                    .init = tracked_init,
                                    .receive = tracked_receive,
                                    .terminate = tracked_terminate};

Test(runtime, free_without_start_runs_init_and_terminate_of_every_actor)
{
    tr_runtime *rt = tr_test_runtime_ex(2, 0, false);
    current_rt = rt;
    for (int i = 0; i < 5; i++) {
        tr_actor_id id;
        cr_assert_eq(tr_spawn(rt, &tracked, NULL, NULL, &id), 0);
        cr_assert_eq(tr_send_copy(id, MSG_NUM, NULL, 0), 0);
    }
    tr_runtime_free(rt);
    cr_assert_eq(tr_test_load(&inits), 5, "init runs once for every spawn");
    cr_assert_eq(tr_test_load(&terms), 5);
    cr_assert_eq(tr_test_load(&receives), 0);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(term_reason[i], TR_EXIT_KILLED);
    }
}

Test(runtime, handles_stay_safe_after_the_runtime_is_freed)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &counter, NULL, NULL, &id), 0);
    cr_assert_eq(tr_send_copy(id, MSG_NUM, NULL, 0), 0);
    cr_assert(tr_test_wait_ge(&got, 1, 10000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_send_copy(id, MSG_NUM, "x", 1), TR_ECLOSED);
    cr_assert_eq(tr_kill(id, 0), TR_ECLOSED);
}

/* ---- graceful shutdown ---- */

#define BUSY 100
#define PENDING 200

Test(runtime, shutdown_with_pending_messages_runs_every_terminate_and_frees_them)
{
    tr_buf *payload = tr_buf_copy("pending", 7);
    tr_runtime *rt = tr_test_runtime_ex(2, 0, false);
    current_rt = rt;
    for (int i = 0; i < BUSY; i++) {
        tr_actor_id id;
        cr_assert_eq(tr_spawn(rt, &tracked, NULL, NULL, &id), 0);
        for (int k = 0; k < PENDING; k++) {
            tr_msg *m = tr_msg_new_buf(MSG_NUM, tr_buf_retain(payload));
            cr_assert_eq(tr_send(id, m), 0);
        }
    }
    cr_assert_eq(tr_runtime_start(rt), 0);
    /* Shut down at once: most messages are still queued. */
    cr_assert_eq(tr_runtime_shutdown(rt, 10000), 0);
    cr_assert_eq(tr_runtime_actor_count(rt), 0);
    cr_assert_eq(tr_test_load(&inits), BUSY);
    cr_assert_eq(tr_test_load(&terms), BUSY, "every terminate ran");
    cr_assert_eq(tr_test_load(&terms_on_worker), BUSY, "on the actors' workers");
    for (int i = 0; i < BUSY; i++) {
        cr_assert_eq(term_reason[i], TR_EXIT_SHUTDOWN);
    }
    cr_assert_leq(tr_test_load(&receives), (uint64_t)BUSY * PENDING);
    /* Unread messages were freed with their mailboxes. */
    cr_assert_eq(tr_buf_refs(payload), 1, "refs %u", tr_buf_refs(payload));
    tr_runtime_free(rt);
    tr_buf_release(payload);
}

/* Traps the shutdown and exits on its own a little later. */
static uint64_t slow_exit_ns;
static int64_t slow_reason;

static int slow_init(tr_actor *self, void *arg)
{
    (void)arg;
    tr_actor_trap_shutdown(self, true);
    return 0;
}

static void slow_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == TR_MSG_SHUTDOWN) {
        tr_send_after(self, tr_self(self), tr_msg_new(MSG_LATER, NULL, 0), 100, NULL);
    } else if (tr_msg_type(m) == MSG_LATER) {
        tr_exit(self, TR_EXIT_USER + 1);
    }
}

static void slow_terminate(tr_actor *self, int reason)
{
    (void)self;
    slow_reason = reason;
    tr_test_store(&slow_exit_ns, tr_test_now_ns());
}

static const tr_behavior slow = {
    .name = "slow", .init = slow_init, .receive = slow_receive, .terminate = slow_terminate};

Test(runtime, shutdown_waits_for_actors_that_trap_it_and_exit_later)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &slow, NULL, NULL, &id), 0);
    uint64_t t0 = tr_test_now_ns();
    cr_assert_eq(tr_runtime_shutdown(rt, 10000), 0);
    uint64_t t1 = tr_test_now_ns();
    cr_assert_neq(tr_test_load(&slow_exit_ns), 0);
    cr_assert_geq(tr_test_load(&slow_exit_ns) - t0, 100ull * 1000000, "exited before its timer");
    cr_assert_geq(t1, tr_test_load(&slow_exit_ns), "shutdown returned before the exit");
    cr_assert_eq(slow_reason, TR_EXIT_USER + 1, "it chose its own exit");
    tr_runtime_free(rt);
}

/* ---- forced shutdown ---- */

typedef struct lines {
    uint64_t deadline_lines, forced_lines;
    char deadline_line[256];
    pthread_mutex_t lock;
} lines;

static lines L = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void sink(tr_log_level level, const char *line, void *user)
{
    (void)user;
    if (level != TR_LOG_WARN) {
        return;
    }
    pthread_mutex_lock(&L.lock);
    if (strstr(line, "event=shutdown_deadline") != NULL) {
        snprintf(L.deadline_line, sizeof(L.deadline_line), "%s", line);
        tr_test_add(&L.deadline_lines, 1);
    } else if (strstr(line, "event=shutdown_forced") != NULL) {
        tr_test_add(&L.forced_lines, 1);
    }
    pthread_mutex_unlock(&L.lock);
}

static int stubborn_init(tr_actor *self, void *arg)
{
    tr_actor_trap_shutdown(self, true);
    return tracked_init(self, arg);
}

static const tr_behavior stubborn = {.name = "stubborn",
                                     .init = stubborn_init,
                                     .receive = tracked_receive,
                                     .terminate = tracked_terminate};

#define DEADLINE_MS 300

Test(runtime, shutdown_forces_actors_that_never_exit_at_the_deadline)
{
    tr_log_set_sink(sink, NULL); /* before the workers start */
    tr_runtime *rt = tr_test_runtime(2);
    current_rt = rt;
    tr_actor_id never, obedient;
    cr_assert_eq(tr_spawn(rt, &stubborn, NULL, NULL, &never), 0);
    cr_assert_eq(tr_spawn(rt, &tracked, NULL, NULL, &obedient), 0);
    cr_assert(tr_test_wait_ge(&inits, 2, 10000));

    uint64_t t0 = tr_test_now_ns();
    int rc = tr_runtime_shutdown(rt, DEADLINE_MS);
    uint64_t elapsed_ms = (tr_test_now_ns() - t0) / 1000000;
    cr_assert_eq(rc, TR_ETIMEDOUT, "rc %d", rc);
    cr_assert_geq(elapsed_ms, DEADLINE_MS, "gave up early: %llu ms",
                  (unsigned long long)elapsed_ms);
    cr_assert_leq(elapsed_ms, DEADLINE_MS + 1000, "waited past the deadline: %llu ms",
                  (unsigned long long)elapsed_ms);

    /* The forced exit runs on the worker, terminate included. */
    cr_assert(tr_test_wait_ge(&terms, 2, 10000));
    cr_assert(tr_test_wait_actor_count(rt, 0, 10000));
    cr_assert_eq(tr_test_load(&terms_on_worker), 2);
    int64_t r0 = term_reason[0], r1 = term_reason[1];
    cr_assert((r0 == TR_EXIT_SHUTDOWN && r1 == TR_EXIT_KILLED) ||
                  (r1 == TR_EXIT_SHUTDOWN && r0 == TR_EXIT_KILLED),
              "reasons %lld %lld", (long long)r0, (long long)r1);
    cr_assert_eq(tr_runtime_stop(rt), 0);
    tr_runtime_free(rt);
    tr_log_set_sink(NULL, NULL);

    cr_assert_eq(tr_test_load(&L.deadline_lines), 1, "the deadline was logged");
    cr_assert_not_null(strstr(L.deadline_line, "timeout_ms=300"), "%s", L.deadline_line);
    cr_assert_not_null(strstr(L.deadline_line, "actors_left="), "%s", L.deadline_line);
    cr_assert_geq(tr_test_load(&L.forced_lines), 1, "the forced kill was logged");
}

Test(runtime, stop_without_shutdown_forces_every_actor_and_runs_terminate)
{
    tr_runtime *rt = tr_test_runtime(2);
    current_rt = rt;
    for (int i = 0; i < 10; i++) {
        tr_actor_id id;
        cr_assert_eq(tr_spawn(rt, i % 2 ? &stubborn : &tracked, NULL, NULL, &id), 0);
    }
    cr_assert(tr_test_wait_ge(&inits, 10, 10000));
    cr_assert_eq(tr_runtime_stop(rt), 0);
    cr_assert_eq(tr_test_load(&terms), 10);
    cr_assert_eq(tr_test_load(&terms_on_worker), 10);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(term_reason[i], TR_EXIT_KILLED);
    }
    cr_assert_eq(tr_runtime_actor_count(rt), 0);
    tr_runtime_free(rt);
}

/* ---- calls that would block a worker ---- */

typedef struct on_worker {
    tr_runtime *rt;
    int shutdown_rc, stop_rc, start_rc;
    int on_worker;
    uint64_t done;
} on_worker;

static on_worker OW;

static void caller_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == MSG_CALL) {
        OW.on_worker = tr_runtime_on_worker(OW.rt);
        OW.shutdown_rc = tr_runtime_shutdown(OW.rt, 10);
        OW.stop_rc = tr_runtime_stop(OW.rt);
        OW.start_rc = tr_runtime_start(OW.rt);
        tr_test_store(&OW.done, 1);
    }
}

static const tr_behavior caller = {.name = "caller", .receive = caller_receive};

Test(runtime, blocking_calls_on_a_worker_return_edeadlk)
{
    tr_runtime *rt = tr_test_runtime(2);
    OW.rt = rt;
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &caller, NULL, NULL, &id), 0);
    cr_assert_eq(tr_send_copy(id, MSG_CALL, NULL, 0), 0);
    cr_assert(tr_test_wait_ge(&OW.done, 1, 10000));
    cr_assert_eq(OW.on_worker, 1);
    cr_assert_eq(OW.shutdown_rc, TR_EDEADLK);
    cr_assert_eq(OW.stop_rc, TR_EDEADLK);
    cr_assert_eq(OW.start_rc, TR_EDEADLK);
    cr_assert(tr_runtime_is_running(rt), "nothing changed");
    /* The runtime still works. */
    cr_assert_eq(tr_send_copy(id, MSG_CALL, NULL, 0), 0);
    tr_test_runtime_finish(rt);
}

/* ---- spawning while stopping ---- */

typedef struct late_spawn {
    tr_runtime *rt;
    int rc;
    uint64_t done;
} late_spawn;

static late_spawn LS;

static void late_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    if (tr_msg_type(m) == TR_MSG_SHUTDOWN) {
        tr_actor_id id;
        LS.rc = tr_spawn(LS.rt, &counter, NULL, NULL, &id);
        tr_test_store(&LS.done, 1);
    }
}

static const tr_behavior late = {.name = "late", .receive = late_receive};

Test(runtime, spawn_during_and_after_shutdown_returns_eclosed)
{
    tr_runtime *rt = tr_test_runtime(2);
    LS.rt = rt;
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &late, NULL, NULL, &id), 0);
    cr_assert_eq(tr_runtime_shutdown(rt, 5000), 0);
    cr_assert_eq(tr_test_load(&LS.done), 1);
    cr_assert_eq(LS.rc, TR_ECLOSED, "spawn from an actor while draining");
    cr_assert_eq(tr_spawn(rt, &counter, NULL, NULL, &id), TR_ECLOSED, "after shutdown");
    tr_supervisor_config cfg;
    tr_supervisor_config_defaults(&cfg);
    cr_assert_eq(tr_supervisor_spawn(rt, &cfg, NULL, &id), TR_ECLOSED);
    cr_assert_eq(tr_runtime_stop(rt), 0);
    cr_assert_eq(tr_spawn(rt, &counter, NULL, NULL, &id), TR_ECLOSED, "after stop");
    cr_assert_eq(tr_runtime_actor_count(rt), 0);
    tr_runtime_free(rt);
}

/* ---- independent runtimes ---- */

Test(runtime, two_runtimes_are_independent)
{
    tr_runtime *a = tr_test_runtime(1);
    tr_runtime *b = tr_test_runtime(1);
    tr_actor_id ia, ib;
    cr_assert_eq(tr_spawn(a, &counter, NULL, NULL, &ia), 0);
    cr_assert_eq(tr_spawn(b, &counter, NULL, NULL, &ib), 0);
    cr_assert_eq(tr_runtime_shutdown(a, 5000), 0);
    cr_assert_eq(tr_send_copy(ia, MSG_NUM, NULL, 0), TR_ECLOSED);
    cr_assert(tr_runtime_is_running(b));
    cr_assert_eq(tr_send_copy(ib, MSG_NUM, NULL, 0), 0);
    cr_assert(tr_test_wait_ge(&got, 1, 10000));
    cr_assert_eq(tr_runtime_actor_count(b), 1);
    tr_runtime_free(a);
    tr_test_runtime_finish(b);
}

/* ---- idle ---- */

typedef struct cpu_probe {
    clockid_t clock;
    uint64_t ready;
} cpu_probe;

static int probe_init(tr_actor *self, void *arg)
{
    cpu_probe *p = arg;
    (void)self;
    if (pthread_getcpuclockid(pthread_self(), &p->clock) != 0) {
        return TR_EINVAL;
    }
    tr_test_store(&p->ready, 1);
    return 0;
}

static const tr_behavior probe = {.name = "probe", .init = probe_init, .receive = count_receive};

static uint64_t cpu_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

Test(runtime, idle_workers_sleep_instead_of_spinning)
{
    tr_runtime *rt = tr_test_runtime(2);
    cpu_probe p[2] = {{0}, {0}};
    for (int i = 0; i < 2; i++) {
        tr_spawn_opts opts;
        tr_spawn_opts_defaults(&opts);
        opts.worker = i;
        tr_actor_id id;
        cr_assert_eq(tr_spawn(rt, &probe, &p[i], &opts, &id), 0);
        cr_assert(tr_test_wait_ge(&p[i].ready, 1, 10000));
    }
    uint64_t wall0 = tr_test_now_ns();
    uint64_t cpu0[2] = {cpu_ns(p[0].clock), cpu_ns(p[1].clock)};
    tr_test_wait_timer(rt, 500);
    uint64_t wall = tr_test_now_ns() - wall0;
    for (int i = 0; i < 2; i++) {
        uint64_t used = cpu_ns(p[i].clock) - cpu0[i];
        /* A spinning worker burns the whole wall time; a sleeping one a few
         * wake-ups' worth (the timer, a spin of spin_us each). */
        cr_assert_lt(used, wall / 4, "worker %d used %llu of %llu ns while idle", i,
                     (unsigned long long)used, (unsigned long long)wall);
    }
    tr_test_runtime_finish(rt);
}
