/* troupe-demo: a small actor demo until the network demos exist.
 * A ring of actors passes a token around, then the runtime shuts down. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "troupe/troupe.h"

#define RING 8
#define LAPS 1000

enum { MSG_TOKEN = TR_MSG_USER, MSG_NEXT };

typedef struct node {
    tr_actor_id next;
    unsigned index;
} node;

static tr_actor_id ring[RING];
static int done;

static int node_init(tr_actor *self, void *arg)
{
    node *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        return TR_ENOMEM;
    }
    n->index = (unsigned)(uintptr_t)arg;
    tr_actor_set_state(self, n);
    return 0;
}

static void node_receive(tr_actor *self, tr_msg *m)
{
    node *n = tr_actor_state(self);
    if (tr_msg_type(m) == MSG_NEXT) {
        memcpy(&n->next, tr_msg_data(m), sizeof(n->next));
        return;
    }
    if (tr_msg_type(m) != MSG_TOKEN) {
        return; /* TR_MSG_SHUTDOWN at the end: the runtime then stops us */
    }
    uint64_t hops;
    memcpy(&hops, tr_msg_data(m), sizeof(hops));
    if (hops == 0) {
        printf("token finished its %d laps at node %u\n", LAPS, n->index);
        fflush(stdout);
        __atomic_store_n(&done, 1, __ATOMIC_SEQ_CST);
        return;
    }
    hops--;
    tr_send_copy(n->next, MSG_TOKEN, &hops, sizeof(hops));
}

static void node_terminate(tr_actor *self, int reason)
{
    (void)reason;
    free(tr_actor_state(self));
}

static const tr_behavior node_behavior = {
    .name = "node", .init = node_init, .receive = node_receive, .terminate = node_terminate};

int main(void)
{
    int err;
    tr_runtime *rt = tr_runtime_new(NULL, &err);
    if (rt == NULL) {
        fprintf(stderr, "runtime: %s\n", tr_strerror(err));
        return 1;
    }
    tr_runtime_start(rt);
    for (unsigned i = 0; i < RING; i++) {
        tr_spawn(rt, &node_behavior, (void *)(uintptr_t)i, NULL, &ring[i]);
    }
    for (unsigned i = 0; i < RING; i++) {
        tr_send_copy(ring[i], MSG_NEXT, &ring[(i + 1) % RING], sizeof(tr_actor_id));
    }
    uint64_t hops = (uint64_t)RING * LAPS;
    printf("troupe-demo: %u actors on %u workers pass a token %llu times\n", RING,
           tr_runtime_workers(rt), (unsigned long long)hops);
    tr_send_copy(ring[0], MSG_TOKEN, &hops, sizeof(hops));
    for (int i = 0; i < 10000 && !__atomic_load_n(&done, __ATOMIC_SEQ_CST); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    int rc = tr_runtime_shutdown(rt, 2000);
    printf("shutdown: %s\n", rc == 0 ? "clean" : tr_strerror(rc));
    tr_runtime_free(rt);
    return 0;
}
