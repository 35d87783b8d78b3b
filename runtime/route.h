/* Internal: how a message reaches its actor (design notes in worker.h and
 * route.c). */
#ifndef TROUPE_RUNTIME_ROUTE_H
#define TROUPE_RUNTIME_ROUTE_H

#include <stdbool.h>

#include "troupe/msg.h"

struct tr__worker;
struct tr_actor;
struct tr__slot;

/* Lanes, as private message flags (with TR_MSGF_SYSTEM). */
enum tr__lane { TR__LANE_USER = 0, TR__LANE_SYS = 1, TR__LANE_OVER = 2 };

/* Sends m to `to` on `lane` (m->from and the public flags already set).
 * Takes m in every case. Returns 0, TR_ECLOSED (target gone: known at
 * once if it exited before the call; one that exits while the message is
 * in flight frees it unread), or TR_EBUFFULL (bounded mailbox full).
 * Any thread. */
int tr__route(tr_actor_id to, tr_msg *m, enum tr__lane lane);

/* A worker task: a message (type TR_MSG__TASK) whose payload starts with
 * this header. The target worker calls run(w, m) between actor turns, in
 * the order the message arrived among the others from the same sender
 * thread, then frees m. It is how net/ hands one worker a batch of work
 * for many of its actors in one message (a broadcast to connections).
 * run is called even while the worker is being shut down, and must check
 * that the actors it touches are still alive. A task that will never run
 * (the runtime is freed with it still queued) gets drop(m) instead, to give
 * back what it holds. */
typedef struct tr__task {
    void (*run)(struct tr__worker *w, tr_msg *m);
    void (*drop)(tr_msg *m);
} tr__task;

/* Sends the task m to worker tw (taking m). From tw's own thread the task
 * runs at once, inside the caller's turn. Returns 0. Any thread. */
int tr__route_task(struct tr__worker *tw, tr_msg *m);

/* The worker that owns actor `id`, or NULL if it is not alive. Any thread
 * (a snapshot: the actor may end at once, but the worker stays as long as
 * the runtime). */
struct tr__worker *tr__route_worker_of(tr_actor_id id);

/* Appends m to a's mailbox and makes a ready. a lives on w, the calling
 * thread's worker, and is alive. */
void tr__deliver(struct tr__worker *w, struct tr_actor *a, tr_msg *m);

/* Publishes w's pending chains to their workers (waking sleepers).
 * Owner only. */
void tr__route_publish(struct tr__worker *w);

/* Whether a message waits for w in any of its queues. Any thread (a
 * snapshot). */
bool tr__route_has_inbound(struct tr__worker *w);

/* Takes every queue of w and hands each message to its actor (or frees
 * it if the actor is gone). Returns whether it took any. Owner only. */
bool tr__route_take_inbound(struct tr__worker *w);

/* Whether a user message sent to s's actor now would be accepted (the
 * mailbox is unbounded or under its limit). Any thread (a snapshot). */
bool tr__route_has_room(struct tr__slot *s);

/* Frees a message that will never be delivered, giving back its mailbox
 * reservation; a MONITOR is answered with a DOWN (TR_EXIT_NOPROC). */
void tr__route_drop(tr_msg *m);

#endif
