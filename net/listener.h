/* Internal: a server's listening sockets and its accept loop (listener.c).
 * Opening runs on the thread that calls tr_server_start; the accept loop
 * (init, start, stop, close) on the agent's own worker. */
#ifndef TROUPE_NET_LISTENER_H
#define TROUPE_NET_LISTENER_H

#include <ev.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "server_impl.h"

/* A listening socket on sa (SO_REUSEADDR for TCP, SO_REUSEPORT if asked;
 * a Unix path bound under unix_path's rules into s->upath). Returns the
 * fd, or a negated errno / TR_EINVAL as binding does. */
int tr__listener_open(tr_server *s, const struct sockaddr_storage *sa, socklen_t len,
                      bool reuseport);

/* The first listener: on the parsed address, or (a host name, resolved
 * here: blocks up to resolve_timeout_ms) on the first of its addresses
 * that binds, which then becomes s->addr. Returns the fd, or TR_ENONAME,
 * TR_ETIMEDOUT or the last bind error. */
int tr__listener_open_first(tr_server *s, bool reuseport);

/* Records the address agents[0]'s listener got (s->bound). */
void tr__listener_set_bound(tr_server *s);

/* Prepares the agent's watchers on its listener (ag->lfd). */
void tr__listener_init(tr__agent *ag);

/* Starts accepting (if the agent has a listener and the server runs);
 * stops; and stops for good, closing the listener. Idempotent. */
void tr__listener_start(tr__agent *ag, struct ev_loop *loop);
void tr__listener_stop(tr__agent *ag, struct ev_loop *loop);
void tr__listener_close(tr__agent *ag, struct ev_loop *loop);

#endif
