/* A server's or client's connection settings (tr__conn_cfg): defaults,
 * the copy of the public tr_conn_settings, the TLS context it holds, the
 * checks, and the reference count that keeps the block alive for
 * connections that outlive their server or client record. */
#include "conn_settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/atomic.h"
#include "tls.h"

void tr__conn_settings_defaults(tr_conn_settings *set)
{
    memset(set, 0, sizeof(*set));
    set->linger_ms = 5000;
    set->tls_handshake_timeout_ms = 10000;
    set->frame_timeout_ms = 30000;
    set->max_frame_bytes = 1u << 20;
    set->send_queue_bytes = 4u << 20;
    set->high_watermark = 1u << 20;
    set->low_watermark = 256u << 10;
    set->send_overflow = TR_OVERFLOW_REFUSE;
    set->nodelay = true;
    set->keepalive = true;
}

void tr__conn_cfg_copy(tr__conn_cfg *cc, const tr_conn_settings *set)
{
    cc->conn = *set;
    cc->conn.tls = NULL; /* no reference yet: tr__conn_cfg_set_tls takes one */
}

int tr__conn_cfg_set_tls(tr__conn_cfg *cc, tr_tls *tls, bool server, const char *server_name)
{
    if (tls == NULL) {
        return 0;
    }
    if (tr__tls_is_server(tls) != server || cc->conn.tls_handshake_timeout_ms == 0 ||
        (server_name != NULL && strlen(server_name) >= sizeof(cc->server_name))) {
        return TR_EINVAL;
    }
    tr__tls_retain(tls);
    cc->conn.tls = tls; /* released with the settings */
    cc->tls_server = server;
    snprintf(cc->server_name, sizeof(cc->server_name), "%s", server_name ? server_name : "");
    return 0;
}

int tr__conn_cfg_check(const tr__conn_cfg *cfg)
{
    const tr_conn_settings *set = &cfg->conn;
    if (set->codec == NULL || set->codec->ops == NULL || set->codec->ops->decode == NULL) {
        return TR_ENOCODEC;
    }
    if (set->handler == NULL && tr_actor_id_is_none(cfg->handler_actor)) {
        return TR_ENOHANDLER;
    }
    if (set->handler != NULL && set->handler->on_frame == NULL &&
        tr_actor_id_is_none(cfg->handler_actor)) {
        return TR_ENOHANDLER;
    }
    if (set->max_frame_bytes == 0 || set->send_queue_bytes == 0 ||
        set->low_watermark > set->high_watermark || set->high_watermark > set->send_queue_bytes) {
        return TR_EINVAL;
    }
    for (int i = 0; i < TR_ERR__COUNT; i++) {
        if (set->policy[i] != TR_DISCONNECT && set->policy[i] != TR_CONTINUE) {
            return TR_EINVAL;
        }
    }
    return 0;
}

tr__conn_cfg *tr__conn_cfg_new(void)
{
    tr__conn_cfg *cfg = calloc(1, sizeof(*cfg));
    if (cfg != NULL) {
        cfg->refs = 1;
        cfg->counted = true;
    }
    return cfg;
}

void tr__conn_cfg_retain(const tr__conn_cfg *cfg)
{
    if (cfg->counted) {
        tr__faa_sc_32((uint32_t *)&cfg->refs, 1);
    }
}

void tr__conn_cfg_release(const tr__conn_cfg *cfg)
{
    if (cfg == NULL || !cfg->counted) {
        return;
    }
    if (tr__faa_sc_32((uint32_t *)&cfg->refs, UINT32_MAX) == 1) {
        tr__tls_release(cfg->conn.tls);
        free(cfg->owned);
        free((tr__conn_cfg *)cfg);
    }
}
