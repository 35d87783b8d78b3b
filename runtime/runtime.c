#include "runtime.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sched.h>
#include <unistd.h>

#include "troupe/log.h"
#include "atomic.h"
#include "route.h"
#include "util.h"

void tr_runtime_config_defaults(tr_runtime_config *cfg)
{
    cfg->workers = 0;
    cfg->batch = 64;
    cfg->spin_us = 50;
    cfg->poll_us = 100;
}

tr_runtime *tr_runtime_new(const tr_runtime_config *cfg, int *err)
{
    int rc = TR_EINVAL;
    tr_runtime_config defaults;
    if (cfg == NULL) {
        tr_runtime_config_defaults(&defaults);
        cfg = &defaults;
    }
    if (cfg->workers > 1024 || cfg->spin_us > 1000000 || cfg->poll_us > 1000000) {
        goto fail;
    }
    rc = TR_ENOMEM;
    tr_runtime *rt = aligned_alloc(64, sizeof(*rt));
    if (rt == NULL) {
        goto fail;
    }
    memset(rt, 0, sizeof(*rt));
    rt->cfg = *cfg;
    if (rt->cfg.workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        rt->cfg.workers = n > 0 ? (unsigned)n : 1;
    }
    if (rt->cfg.batch == 0) {
        rt->cfg.batch = 64;
    }
    rt->nworkers = rt->cfg.workers;
    rt->workers = aligned_alloc(64, sizeof(tr__worker) * rt->nworkers);
    if (rt->workers == NULL) {
        goto fail_rt;
    }
    unsigned i;
    for (i = 0; i < rt->nworkers; i++) {
        memset(&rt->workers[i], 0, sizeof(tr__worker));
        if ((rc = tr__worker_init(&rt->workers[i], rt, i, rt->nworkers)) < 0) {
            goto fail_workers;
        }
    }
    pthread_mutex_init(&rt->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rt->idle, &ca);
    pthread_condattr_destroy(&ca);
    *err = 0;
    return rt;
fail_workers:
    while (i-- > 0) {
        tr__worker_fini(&rt->workers[i]);
    }
    free(rt->workers);
fail_rt:
    free(rt);
fail:
    *err = rc;
    return NULL;
}

int tr_runtime_on_worker(const tr_runtime *rt)
{
    tr__worker *w = tr__current_worker();
    return w != NULL && w->rt == rt;
}

int tr_runtime_start(tr_runtime *rt)
{
    if (tr__current_worker() != NULL) {
        return TR_EDEADLK;
    }
    if (!tr__cas_sc_32(&rt->state, TR__RT_CREATED, TR__RT_RUNNING)) {
        return TR_ESTATE;
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        int rc = tr__worker_start(&rt->workers[i]);
        if (rc < 0) {
            for (unsigned j = 0; j < i; j++) {
                tr__worker_join(&rt->workers[j]);
            }
            tr__store_rel_32(&rt->state, TR__RT_STOPPED);
            return rc;
        }
    }
    return 0;
}

static void wake_all(tr_runtime *rt)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        tr__worker_wake(&rt->workers[i]);
    }
}

void tr__runtime_actor_gone(tr_runtime *rt)
{
    if (tr__faa_sc_64(&rt->live, (uint64_t)-1) == 1) {
        pthread_mutex_lock(&rt->lock);
        pthread_cond_broadcast(&rt->idle);
        pthread_mutex_unlock(&rt->lock);
    }
}

int tr_runtime_shutdown(tr_runtime *rt, uint32_t timeout_ms)
{
    if (tr__current_worker() != NULL) {
        return TR_EDEADLK;
    }
    if (!tr__cas_sc_32(&rt->state, TR__RT_RUNNING, TR__RT_DRAINING)) {
        return TR_ESTATE;
    }
    tr__store_rel_32(&rt->shutdown_req, 1);
    wake_all(rt);

    struct timespec deadline;
    tr__timespec_after_ms(&deadline, timeout_ms);
    pthread_mutex_lock(&rt->lock);
    while (tr__load_acq_64(&rt->live) != 0) {
        if (pthread_cond_timedwait(&rt->idle, &rt->lock, &deadline) != 0 &&
            tr__load_acq_64(&rt->live) != 0) {
            break; /* ETIMEDOUT */
        }
    }
    pthread_mutex_unlock(&rt->lock);
    uint64_t left = tr__load_acq_64(&rt->live);
    if (left == 0) {
        return 0;
    }
    tr_log(TR_LOG_WARN, "event=shutdown_deadline timeout_ms=%u actors_left=%llu", timeout_ms,
           (unsigned long long)left);
    tr__store_rel_32(&rt->force_req, 1);
    wake_all(rt);
    return TR_ETIMEDOUT;
}

int tr_runtime_stop(tr_runtime *rt)
{
    if (tr__current_worker() != NULL) {
        return TR_EDEADLK;
    }
    uint32_t prev = tr__fas_sc_32(&rt->state, TR__RT_STOPPED);
    if (prev == TR__RT_STOPPED) {
        return 0;
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        tr__worker_join(&rt->workers[i]);
    }
    return 0;
}

void tr_runtime_free(tr_runtime *rt)
{
    if (rt == NULL) {
        return;
    }
    tr_runtime_stop(rt);
    /* Actors spawned before start, or racing with stop, sit in queues no
     * thread serves any more: kill them here, single-threaded, each as if
     * on its own worker. A kill may send to another worker's queues (a
     * DOWN), so go round until every queue is empty. */
    bool busy = true;
    while (busy) {
        busy = false;
        for (unsigned i = 0; i < rt->nworkers; i++) {
            tr__worker *w = &rt->workers[i];
            tr__set_current(w, NULL);
            busy |= tr__route_has_inbound(w) || w->actors != NULL || w->run_head != NULL;
            tr__worker_kill_all(w);
        }
    }
    tr__set_current(NULL, NULL);
    /* Every actor is dead; some may still be pinned by other threads (a
     * tr_conn_send_wait that the close just woke, a send in progress):
     * each reclaims its actor as it unpins, through rt. Wait for them:
     * first for the live count, then for the last of them to leave
     * reclaim (it counted itself in foreign_reclaims before live fell). */
    uint64_t deadline = tr__now_ms() + 5000;
    while (tr__load_acq_64(&rt->live) != 0 && tr__now_ms() < deadline) {
        tr__nap();
    }
    if (tr__load_acq_64(&rt->live) != 0) {
        /* A thread still holds a pin on a dead actor and will reclaim it
         * through rt: freeing rt now would be a use-after-free. Leak it. */
        tr_log(TR_LOG_ERROR, "event=runtime_free_busy actors_left=%llu",
               (unsigned long long)tr__load_acq_64(&rt->live));
        return;
    }
    while (tr__load_acq_32(&rt->foreign_reclaims) != 0) {
        sched_yield(); /* a few instructions from done: see reclaim() */
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        tr__worker_fini(&rt->workers[i]);
    }
    if (rt->net != NULL && rt->net_free != NULL) {
        rt->net_free(rt->net);
    }
    pthread_cond_destroy(&rt->idle);
    pthread_mutex_destroy(&rt->lock);
    free(rt->workers);
    free(rt);
}

unsigned tr_runtime_workers(const tr_runtime *rt)
{
    return rt->nworkers;
}

uint64_t tr_runtime_actor_count(const tr_runtime *rt)
{
    return tr__load_acq_64((uint64_t *)&rt->live);
}

int tr_runtime_is_running(const tr_runtime *rt)
{
    return tr__load_acq_32((uint32_t *)&rt->state) == TR__RT_RUNNING;
}
