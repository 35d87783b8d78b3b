/* Admission control: the connection limit (max_connections, closing or
 * pausing past it), the per-source-IP limit (max_per_ip, a hash table
 * under a mutex: accepting workers and closing connections of every
 * worker update it), the on_socket hook, and the spawn of the connection
 * actor on its worker. */
#include "admission.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../runtime/atomic.h"
#include "tcp.h"

/* ---- per-source-IP counts ---- */

static size_t ip_key(const struct sockaddr_storage *ss, unsigned char key[17])
{
    memset(key, 0, 17);
    key[0] = (unsigned char)ss->ss_family;
    if (ss->ss_family == AF_INET) {
        memcpy(key + 1, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        memcpy(key + 1, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    }
    size_t h = 1469598103934665603u;
    for (int i = 0; i < 17; i++) {
        h = (h ^ key[i]) * 1099511628211u;
    }
    return h % IP_BUCKETS;
}

/* Adds delta (+1/-1) to the source's count; +1 fails past the limit. */
static bool ip_count(tr_server *s, const struct sockaddr_storage *ss, int delta)
{
    unsigned char key[17];
    size_t b = ip_key(ss, key);
    bool ok = true;
    pthread_mutex_lock(&s->ip_lock);
    tr__ip_entry **p = &s->ip_table[b];
    while (*p != NULL && memcmp((*p)->key, key, sizeof(key)) != 0) {
        p = &(*p)->next;
    }
    if (delta > 0) {
        if (*p == NULL) {
            tr__ip_entry *e = calloc(1, sizeof(*e));
            if (e == NULL) {
                ok = false;
            } else {
                memcpy(e->key, key, sizeof(key));
                e->count = 1;
                *p = e;
            }
        } else if ((*p)->count >= s->cfg.max_per_ip) {
            ok = false;
        } else {
            (*p)->count++;
        }
    } else if (*p != NULL && --(*p)->count == 0) {
        tr__ip_entry *e = *p;
        *p = e->next;
        free(e);
    }
    pthread_mutex_unlock(&s->ip_lock);
    return ok;
}

void tr__admission_init(tr_server *s)
{
    pthread_mutex_init(&s->ip_lock, NULL);
}

void tr__admission_fini(tr_server *s)
{
    for (size_t b = 0; b < IP_BUCKETS; b++) {
        while (s->ip_table[b] != NULL) {
            tr__ip_entry *e = s->ip_table[b];
            s->ip_table[b] = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&s->ip_lock);
}

/* ---- connections arriving and leaving ---- */

void tr__admit(tr__agent *ag, int fd, struct sockaddr_storage *peer, socklen_t plen)
{
    tr_server *s = ag->srv;
    tr__netstats *st = &s->stats[ag->idx];
    if (s->cfg.max_connections && tr__faa_sc_64(&s->open, 1) >= s->cfg.max_connections) {
        tr__faa_sc_64(&s->open, (uint64_t)-1);
        goto refuse;
    } else if (!s->cfg.max_connections) {
        tr__faa_sc_64(&s->open, 1);
    }
    if (s->cfg.max_per_ip && !s->is_unix && !ip_count(s, peer, +1)) {
        tr__faa_sc_64(&s->open, (uint64_t)-1);
        goto refuse;
    }
    if (!s->is_unix) {
        tr__sock_tune(fd, s->ccfg);
    }
    if (s->cfg.on_socket != NULL && s->cfg.on_socket(fd, s->cfg.conn.user) < 0) {
        goto refuse_counted;
    }
    unsigned w = ag->idx;
    if (s->cfg.accept_mode == TR_ACCEPT_SINGLE || s->is_unix) {
        w = tr__faa_sc_32(&s->rr, 1) % s->nagents;
    }
    tr__conn_arg arg = {
        .fd = fd,
        .cfg = s->ccfg,
        .peer = *peer,
        .peer_len = plen,
        .owner = &s->agents[w],
        .list = &s->agents[w].conns,
        .st = &s->stats[w],
        .drain_flag = &s->draining,
        .force_flag = &s->forcing,
    };
    tr_conn_id id;
    if (tr__conn_spawn(s->rt, (int)w, &arg, &id) < 0) {
        goto refuse_counted;
    }
    TR__STAT_ADD(st, accepted, 1);
    return;
refuse_counted:
    if (s->cfg.max_per_ip && !s->is_unix) {
        ip_count(s, peer, -1);
    }
    tr__faa_sc_64(&s->open, (uint64_t)-1);
refuse:
    TR__STAT_ADD(st, refused, 1);
    close(fd);
}

void tr__admission_gone(tr_conn *c)
{
    tr_server *s = ((tr__agent *)c->owner)->srv;
    if (s->cfg.max_per_ip && !s->is_unix) {
        ip_count(s, &c->peer, -1);
    }
    uint64_t left = tr__faa_sc_64(&s->open, (uint64_t)-1) - 1;
    if (s->cfg.max_connections && left < s->cfg.max_connections && tr__load_acq_32(&s->paused) &&
        tr__cas_sc_32(&s->paused, 1, 0)) {
        tr__server_send_agents(s, AG_RESUME);
    }
}
