/* Request/reply: a request carries an id; a timer on the requester
 * (timer.c) turns a missing reply into TR_MSG_TIMEOUT. */
#include "actor.h"
#include "msg_impl.h"
#include "route.h"
#include "timer.h"
#include "worker.h"

int tr_request(tr_actor *self, tr_actor_id to, tr_msg *msg, uint32_t timeout_ms,
               uint64_t *req_out)
{
    if (msg == NULL) {
        return TR_EINVAL;
    }
    uint64_t id = ++self->worker->next_ref;
    /* The timer first: once the request is sent, failing would leave the
     * caller thinking nothing went out while the target answers it. The
     * reply cannot overtake the timer: it comes to this worker, which is
     * busy running us. */
    int rc = tr__request_start(self, to, id, timeout_ms);
    if (rc < 0) {
        tr_msg_free(msg);
        return rc;
    }
    msg->flags = TR_MSGF_REQUEST;
    msg->from = self->id;
    msg->ref = id;
    rc = tr__route(to, msg, TR__LANE_USER);
    if (rc < 0) {
        tr__request_complete(self, id); /* cancels the timer */
        return rc;
    }
    if (req_out != NULL) {
        *req_out = id;
    }
    return 0;
}

int tr_reply(tr_actor *self, const tr_msg *request, tr_msg *reply)
{
    if (reply == NULL) {
        return TR_EINVAL;
    }
    if ((request->flags & TR_MSGF_REQUEST) == 0) {
        tr_msg_free(reply);
        return TR_EINVAL;
    }
    reply->flags = TR_MSGF_REPLY;
    reply->from = self->id;
    reply->ref = request->ref;
    return tr__route(request->from, reply, TR__LANE_USER);
}
