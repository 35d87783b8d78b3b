/* Snapshots for metrics, readable from any thread: a worker's counters
 * and an actor's mailbox depth. The owning worker keeps both with relaxed
 * atomic stores (worker.c, mailbox.c); this file only reads them, with
 * relaxed loads: a metric needs no ordering with anything else, only
 * freedom from torn values and data races. */
#include <stddef.h>

#include "actor.h"
#include "atomic.h"
#include "runtime.h"
#include "worker.h"

int tr_runtime_worker_stats(const tr_runtime *rt, unsigned worker, tr_worker_stats *out)
{
    if (rt == NULL || out == NULL || worker >= rt->nworkers) {
        return TR_EINVAL;
    }
    const tr__worker *w = &rt->workers[worker];
    out->actors = tr__load_rlx_64(&w->st_actors);
    out->turns = tr__load_rlx_64(&w->st_turns);
    out->messages = tr__load_rlx_64(&w->st_messages);
    out->busy_ns = tr__load_rlx_64(&w->st_busy_ns);
    out->sleeps = tr__load_rlx_64(&w->st_sleeps);
    return 0;
}

int tr_actor_mailbox_depth(tr_actor_id id, uint32_t *depth)
{
    if (depth == NULL) {
        return TR_EINVAL;
    }
    /* The pin keeps the actor record (and its mailbox) from being freed
     * while we read it; the actor may still exit meanwhile, and its last
     * depth is as good a snapshot as any. */
    tr__slot *s;
    tr_actor *a = tr__actor_pin(id, &s);
    if (a == NULL) {
        return TR_ECLOSED;
    }
    *depth = tr__load_rlx_32(&a->mbox.depth);
    tr__actor_unpin(s, a);
    return 0;
}
