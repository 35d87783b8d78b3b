/* Monitors: a watcher's MONITOR message is kept by the watched actor and
 * comes back to the watcher as its DOWN. */
#include "actor.h"
#include "msg_impl.h"
#include "route.h"
#include "worker.h"

void tr__actor_monitor_gone(tr_msg *mon, tr_actor_id target, int reason)
{
    tr_actor_id watcher = mon->from;
    mon->type = TR_MSG_DOWN;
    mon->flags = TR_MSGF_SYSTEM;
    mon->from = target;
    mon->reason = reason;
    mon->next = NULL;
    tr__route(watcher, mon, TR__LANE_SYS);
}

static int send_sys(tr_actor_id to, uint32_t type, tr_actor_id from, uint64_t ref)
{
    tr_msg *m = tr_msg_new(type, NULL, 0);
    if (m == NULL) {
        return TR_ENOMEM;
    }
    m->from = from;
    m->ref = ref;
    return tr__route(to, m, TR__LANE_SYS);
}

int tr_monitor(tr_actor *self, tr_actor_id target, uint64_t *ref_out)
{
    uint64_t ref = ++self->worker->next_ref;
    if (ref_out != NULL) {
        *ref_out = ref;
    }
    int rc = send_sys(target, TR_MSG__MONITOR, self->id, ref);
    if (rc == TR_ECLOSED) {
        /* Already gone: the DOWN comes at once, as from the target. */
        tr_msg *down = tr_msg_new(TR_MSG_DOWN, NULL, 0);
        if (down == NULL) {
            return TR_ENOMEM;
        }
        down->flags = TR_MSGF_SYSTEM;
        down->from = target;
        down->ref = ref;
        down->reason = TR_EXIT_NOPROC;
        tr__deliver(self->worker, self, down);
        return 0;
    }
    return rc;
}

int tr_demonitor(tr_actor *self, tr_actor_id target, uint64_t ref)
{
    return send_sys(target, TR_MSG__DEMONITOR, self->id, ref);
}
