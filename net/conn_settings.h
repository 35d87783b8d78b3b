/* Internal: the settings every connection of one server or client shares
 * (conn_settings.c), and the server's per-worker counters they carry.
 * Any thread may read them (a sender holding a pin); only the maker
 * writes them, before the first connection sees them. */
#ifndef TROUPE_NET_CONN_SETTINGS_H
#define TROUPE_NET_CONN_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>

#include "troupe/conn.h"
#include "troupe/server.h"
#include "../runtime/atomic.h"
#include "budget.h"

struct tr__transport;

/* Per-worker server counters: written by the owning worker with relaxed
 * stores, summed by readers with relaxed loads. */
typedef struct tr__netstats {
    _Alignas(64) tr_server_stats s; /* one cache line set per worker */
    tr__budget_slice slice;         /* this worker's share of the server's budget */
} tr__netstats;

#define TR__STAT_ADD(st, field, n)                                                                 \
    do {                                                                                           \
        if ((st) != NULL) {                                                                        \
            tr__stat_add_64((uint64_t *)&(st)->s.field, (n));                                      \
        }                                                                                          \
    } while (0)

/* Settings shared by the connections of one server or client.
 *
 * Reference counted: the server or client record holds one reference and
 * every connection actor one more, dropped only when the actor record is
 * reclaimed (after the last pin), since a sender on any thread holding a
 * pin reads them (send_any) however late. The block in `owned` (a
 * server's per-worker counters, which connections also update) goes with
 * the last reference. Settings not made by tr__conn_cfg_new (an embedded
 * connection's own) are not counted. */
typedef struct tr__conn_cfg {
    uint32_t refs;          /* atomics */
    bool counted;           /* immutable: made by tr__conn_cfg_new */
    void *owned;
    /* The server's or client's own settings; conn.tls holds a reference
     * (tr__conn_cfg_set_tls). */
    tr_conn_settings conn;
    tr_actor_id handler_actor;
    const tr_server_observer *observer;
    /* A server's own budget (limits 0: none; a client's is always none). */
    tr__budget budget;
    /* Called once on the owning worker after the connection closed. */
    void (*on_gone)(tr_conn *c);
    /* Client: the write watcher fired before the connect completed. */
    void (*connect_done)(tr_conn *c);
    /* Called last when the connection actor ends (frees client records). */
    void (*on_free)(tr_conn *c);
    /* The transport new connections get (each connection then owns its
     * own: tr_conn.tp and tp_state). */
    const struct tr__transport *tp;
    bool tls_server;
    char server_name[256];  /* client: SNI and the name verified ("" none) */
    /* Client: the TLS handshake ended (err 0: on_open follows; else the
     * transport is closed already and the hook decides what next). */
    void (*handshake_done)(tr_conn *c, int err);
} tr__conn_cfg;

/* A counted settings block with one reference, zeroed; NULL when out of
 * memory. Any thread. */
tr__conn_cfg *tr__conn_cfg_new(void);
void tr__conn_cfg_retain(const tr__conn_cfg *cfg);
/* Drops a reference; the last frees the block and cfg->owned. */
void tr__conn_cfg_release(const tr__conn_cfg *cfg);

/* Fills the defaults a server and a client share (linger, limits,
 * watermarks, socket options, TLS handshake timeout); each side then sets
 * its own (idle timeout, keep-alive idle). Any thread. */
void tr__conn_settings_defaults(tr_conn_settings *set);

/* Copies a server's or client's settings into cc, with no TLS context
 * yet (tr__conn_cfg_set_tls puts one in, with its own reference). */
void tr__conn_cfg_copy(tr__conn_cfg *cc, const tr_conn_settings *set);

/* Puts a TLS context (or none: NULL) into the settings, with a reference
 * of its own. Returns 0, or TR_EINVAL (a client context for a server or
 * the reverse, no handshake timeout, a server name too long). */
int tr__conn_cfg_set_tls(tr__conn_cfg *cc, struct tr_tls *tls, bool server,
                         const char *server_name);

/* Checks the settings: TR_ENOCODEC (no codec, or one that cannot
 * decode), TR_ENOHANDLER (no handler or handler actor, or a handler
 * without on_frame), TR_EINVAL (a zero frame or queue limit, watermarks
 * out of order, an unknown policy action), or 0. */
int tr__conn_cfg_check(const tr__conn_cfg *cfg);

#endif
