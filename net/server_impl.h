/* Internal: what the parts of a server share (server.c: the public API,
 * the agent actor, shutdown; listener.c: listening sockets and the accept
 * loop; admission.c: connection limits and the per-IP table).
 *
 * Each worker has an "agent" actor for the server. An agent owns the
 * worker's listening socket (one SO_REUSEPORT socket per worker, or only
 * worker 0's in single-acceptor mode) and the list of the server's
 * connections on that worker, so shutdown and forced closes are plain
 * messages to W agents, each acting on its own thread. */
#ifndef TROUPE_NET_SERVER_IMPL_H
#define TROUPE_NET_SERVER_IMPL_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "troupe/server.h"
#include "conn.h"
#include "unix_path.h"

enum { S_CREATED, S_RUNNING, S_DRAINING, S_STOPPED };

enum {
    AG_STOP_ACCEPT = TR_MSG__NET + 1,
    AG_DRAIN,
    AG_FORCE,
    AG_RESUME,
    AG_EXIT,
    AG_ADOPT /* payload: a connected fd (tr_server_adopt) */
};

#define IP_BUCKETS 1024

typedef struct tr__agent {
    tr_server *srv;
    unsigned idx;
    int lfd;              /* owning worker once the agent started */
    ev_io lio;
    ev_timer retry;
    bool listening;
    tr_actor_id id;
    tr__conn_list conns;  /* owning worker only */
} tr__agent;

typedef struct tr__ip_entry {
    struct tr__ip_entry *next;
    unsigned char key[17];
    uint32_t count;
} tr__ip_entry;

struct tr_server {
    tr_runtime *rt;
    tr_server_config cfg;
    tr__conn_cfg *ccfg;    /* counted: connections keep it past the server */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char *listen_host;     /* a host name resolved at start, or NULL */
    uint16_t listen_port;
    bool adopted;          /* serving cfg.listen_fd (agents[0].lfd) */
    struct sockaddr_storage bound;
    socklen_t bound_len;
    bool is_unix;          /* a Unix stream socket: one listener, no per-IP table */
    tr__unix_path upath;   /* the socket file we made (unlinked on stop) */
    uint32_t state;        /* atomics */
    uint32_t draining;     /* atomics: connections starting now drain at once */
    uint32_t forcing;      /* atomics */
    uint32_t paused;       /* atomics: admission paused accepting */
    uint32_t acks;         /* atomics: agents that stopped accepting */
    uint32_t agents_alive; /* atomics */
    uint32_t rr;           /* atomics */
    uint64_t open;         /* atomics: connections admitted and not gone */
    unsigned nagents;
    tr__agent *agents;
    tr__netstats *stats;   /* per worker */
    pthread_mutex_t ip_lock;
    tr__ip_entry *ip_table[IP_BUCKETS];
};

/* Sends a message of `type` (AG_*) to every agent. Any thread. */
void tr__server_send_agents(tr_server *s, uint32_t type);

#endif
