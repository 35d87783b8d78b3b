/* Internal: admission control for a server's connections (admission.c):
 * max_connections, max_per_ip, the on_socket hook, and the connection
 * actor's spawn. */
#ifndef TROUPE_NET_ADMISSION_H
#define TROUPE_NET_ADMISSION_H

#include <sys/socket.h>

#include "server_impl.h"

/* The per-IP table's lock: made by tr_server_new, destroyed (with every
 * entry left) by tr_server_free. */
void tr__admission_init(tr_server *s);
void tr__admission_fini(tr_server *s);

/* A connected fd (accepted, or adopted) on the agent's worker: admits it
 * under the limits, tunes it, runs on_socket and spawns its connection
 * actor; or closes it and counts it as refused. Takes fd in every case.
 * Owning worker of ag. */
void tr__admit(tr__agent *ag, int fd, struct sockaddr_storage *peer, socklen_t plen);

/* A server connection is gone (tr__conn_cfg.on_gone): gives back its
 * place under the limits, and resumes accepting if admission paused it.
 * The connection's worker. */
void tr__admission_gone(tr_conn *c);

#endif
