/* TLS when troupe is built without BoringSSL: every entry point says
 * TR_ENOTSUP, and no connection ever gets a TLS transport. */
#include "tls.h"

#include <stdio.h>
#include <string.h>

void tr_tls_config_defaults(tr_tls_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->min_version = TR_TLS_1_2;
    cfg->max_version = TR_TLS_1_3;
}

tr_tls *tr_tls_new(const tr_tls_config *cfg, char *errbuf, size_t errlen, int *err)
{
    (void)cfg;
    if (errbuf != NULL && errlen > 0) {
        snprintf(errbuf, errlen, "built without BoringSSL");
    }
    if (err != NULL) {
        *err = TR_ENOTSUP;
    }
    return NULL;
}

int tr_tls_reload(tr_tls *tls, const tr_tls_config *cfg, char *errbuf, size_t errlen)
{
    (void)tls;
    (void)cfg;
    (void)errbuf;
    (void)errlen;
    return TR_ENOTSUP;
}

void tr_tls_free(tr_tls *tls)
{
    (void)tls;
}

void tr__tls_retain(tr_tls *tls)
{
    (void)tls;
}

void tr__tls_release(tr_tls *tls)
{
    (void)tls;
}

bool tr__tls_is_server(const tr_tls *tls)
{
    (void)tls;
    return false;
}

int tr__tls_attach(tr_conn *c, tr_tls *tls, const char *server_name)
{
    (void)c;
    (void)tls;
    (void)server_name;
    return TR_ENOTSUP;
}

int tr_conn_tls_info(const tr_conn *c, tr_tls_info *out)
{
    (void)c;
    (void)out;
    return TR_ENOTSUP;
}
