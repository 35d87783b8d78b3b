/* TLS contexts (BoringSSL): a tr_tls holds the current generation of
 * SSL_CTX objects, built from its config and swapped whole by a reload.
 *
 * A generation has one SSL_CTX per certificate (SNI switches a handshake
 * to the one whose names match) and is reference counted: the context
 * holds one reference, and every TLS connection one more for as long as
 * its SSL object lives, since the SNI and ALPN callbacks read it. */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../runtime/atomic.h"
#include "tls_impl.h"
#include "troupe/error.h"
#include "troupe/log.h"

#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define SYSTEM_CA_DIR "/etc/ssl/certs"
#define DEFAULT_CIPHERS                                                                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define DEFAULT_GROUPS "X25519:P-256:P-384"
#define MAX_PEM_BYTES (1u << 20)

struct tr_tls {
    uint32_t refs; /* atomics */
    bool server;
    pthread_mutex_t mu; /* guards gen (swapped by reload) */
    tr__tls_gen *gen;
    tr_tls_config cfg;  /* a deep copy, for a reload that re-reads files */
};

/* ---- errors ---- */

/* Writes "what: BoringSSL's reason" into errbuf, logs it and clears the
 * thread's error queue. Returns TR_ETLS. */
static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    uint32_t e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    char msg[384];
    snprintf(msg, sizeof(msg), "%s%s%s", what, reason != NULL ? ": " : "",
             reason != NULL ? reason : "");
    ERR_clear_error();
    if (errbuf != NULL && errlen > 0) {
        snprintf(errbuf, errlen, "%s", msg);
    }
    tr_log(TR_LOG_WARN, "event=tls_config_error reason=\"%s\"", msg);
    return TR_ETLS;
}

/* ---- reading PEM ---- */

/* A memory BIO over PEM text, or over a file's contents read now (so a
 * missing file says so, with errno's words). */
static BIO *pem_bio(const char *file, const char *pem, char *errbuf, size_t errlen, int *rc)
{
    if (pem != NULL) {
        BIO *b = BIO_new_mem_buf(pem, -1);
        *rc = b != NULL ? 0 : TR_ENOMEM;
        return b;
    }
    FILE *f = fopen(file, "rb");
    if (f == NULL) {
        *rc = fail(errbuf, errlen, "%s: %s", file, strerror(errno));
        return NULL;
    }
    char *data = malloc(MAX_PEM_BYTES);
    size_t n = data != NULL ? fread(data, 1, MAX_PEM_BYTES, f) : 0;
    bool err = ferror(f) || (data != NULL && n == MAX_PEM_BYTES);
    fclose(f);
    if (data == NULL || err) {
        free(data);
        *rc = data == NULL ? TR_ENOMEM : fail(errbuf, errlen, "%s: unreadable or too large", file);
        return NULL;
    }
    BIO *mem = BIO_new(BIO_s_mem());
    if (mem == NULL || BIO_write(mem, data, (int)n) != (int)n) {
        BIO_free(mem);
        free(data);
        *rc = TR_ENOMEM;
        return NULL;
    }
    free(data);
    *rc = 0;
    return mem;
}

static const char *src_name(const char *file)
{
    return file != NULL ? file : "PEM text";
}

/* Loads a chain and key into ctx; checks that they match. */
static int load_keypair(SSL_CTX *ctx, const tr_tls_keypair *kp, char *errbuf, size_t errlen)
{
    int rc;
    BIO *b = pem_bio(kp->cert_file, kp->cert_pem, errbuf, errlen, &rc);
    if (b == NULL) {
        return rc;
    }
    X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (leaf == NULL || !SSL_CTX_use_certificate(ctx, leaf)) {
        X509_free(leaf);
        BIO_free(b);
        return fail(errbuf, errlen, "%s: no usable certificate", src_name(kp->cert_file));
    }
    X509 *ca;
    while ((ca = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        int ok = SSL_CTX_add1_chain_cert(ctx, ca);
        X509_free(ca);
        if (!ok) {
            X509_free(leaf);
            BIO_free(b);
            return fail(errbuf, errlen, "%s: bad chain certificate", src_name(kp->cert_file));
        }
    }
    ERR_clear_error(); /* the end of the chain reads as "no start line" */
    BIO_free(b);
    if ((b = pem_bio(kp->key_file, kp->key_pem, errbuf, errlen, &rc)) == NULL) {
        X509_free(leaf);
        return rc;
    }
    EVP_PKEY *key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    rc = 0;
    if (key == NULL) {
        rc = fail(errbuf, errlen, "%s: no usable private key", src_name(kp->key_file));
    } else if (!X509_check_private_key(leaf, key)) {
        rc = fail(errbuf, errlen, "%s: the key does not match the certificate %s",
                  src_name(kp->key_file), src_name(kp->cert_file));
    } else if (!SSL_CTX_use_PrivateKey(ctx, key)) {
        rc = fail(errbuf, errlen, "%s: no usable private key", src_name(kp->key_file));
    }
    EVP_PKEY_free(key);
    X509_free(leaf);
    return rc;
}

/* The names a certificate answers to: subjectAltName DNS entries, else
 * the common name. A NULL-terminated, lower-cased list. */
static char **cert_names(SSL_CTX *ctx)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    size_t cap = 8, n = 0;
    char **v = calloc(cap + 1, sizeof(*v));
    if (x == NULL || v == NULL) {
        return v;
    }
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (size_t i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && n < cap; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS) {
            v[n++] = strndup((const char *)ASN1_STRING_get0_data(g->d.dNSName),
                             (size_t)ASN1_STRING_length(g->d.dNSName));
        }
    }
    GENERAL_NAMES_free(gens);
    if (n == 0) {
        X509_NAME *subj = X509_get_subject_name(x);
        int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
        if (i >= 0) {
            ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
            v[n++] = strndup((const char *)ASN1_STRING_get0_data(d), (size_t)ASN1_STRING_length(d));
        }
    }
    for (size_t i = 0; i < n && v[i] != NULL; i++) {
        for (char *p = v[i]; *p; p++) {
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        }
    }
    return v;
}

static bool name_matches(const char *pattern, const char *name)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.'); /* one label only */
        return dot != NULL && dot != name && strcasecmp(dot + 1, pattern + 2) == 0;
    }
    return strcasecmp(pattern, name) == 0;
}

/* ---- callbacks ---- */

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    tr__tls_gen *g = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == NULL || g->n < 2) {
        return SSL_TLSEXT_ERR_OK;
    }
    for (size_t i = 0; i < g->n; i++) {
        for (char **p = g->names[i]; p != NULL && *p != NULL; p++) {
            if (name_matches(*p, name)) {
                if (i > 0) {
                    SSL_set_SSL_CTX(ssl, g->ctx[i]);
                }
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_OK; /* the default certificate */
}

static int on_alpn(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
                   unsigned in_len, void *arg)
{
    (void)ssl;
    const tr__tls_gen *g = arg;
    /* Ours first: the server's preference decides. */
    for (size_t i = 0; i < g->alpn_len; i += 1u + g->alpn[i]) {
        for (unsigned j = 0; j < in_len; j += 1u + in[j]) {
            if (in[j] == g->alpn[i] && j + 1u + in[j] <= in_len &&
                memcmp(in + j + 1, g->alpn + i + 1, in[j]) == 0) {
                *out = in + j + 1;
                *out_len = in[j];
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* OPTIONAL verification: the handshake goes on whatever the result; the
 * handler reads it (tr_conn_tls_info). */
static int verify_accept_all(int ok, X509_STORE_CTX *store)
{
    (void)ok;
    (void)store;
    return 1;
}

/* "h2,http/1.1" -> the wire format (length-prefixed). */
static int alpn_wire(const char *list, unsigned char *out, size_t cap, size_t *len)
{
    *len = 0;
    while (list != NULL && *list != '\0') {
        const char *end = strchr(list, ',');
        size_t n = end != NULL ? (size_t)(end - list) : strlen(list);
        if (n == 0 || n > 255 || *len + 1 + n > cap) {
            return TR_EINVAL;
        }
        out[(*len)++] = (unsigned char)n;
        memcpy(out + *len, list, n);
        *len += n;
        list = end != NULL ? end + 1 : list + n;
    }
    return 0;
}

/* ---- building a generation ---- */

static int load_cas(SSL_CTX *ctx, const tr_tls_config *cfg, char *errbuf, size_t errlen)
{
    if (cfg->ca_pem != NULL) {
        int rc;
        BIO *b = pem_bio(NULL, cfg->ca_pem, errbuf, errlen, &rc);
        if (b == NULL) {
            return rc;
        }
        STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
        X509 *x;
        size_t n = 0;
        while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
            X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x);
            X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(x));
            if (names != NULL && nm != NULL) {
                sk_X509_NAME_push(names, nm);
            }
            X509_free(x);
            n++;
        }
        ERR_clear_error();
        BIO_free(b);
        if (n == 0) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            return fail(errbuf, errlen, "ca_pem: no certificate");
        }
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    const char *file = cfg->ca_file, *dir = cfg->ca_dir;
    if (file == NULL && dir == NULL && cfg->ca_pem == NULL && !cfg->server) {
        file = SYSTEM_CA_FILE; /* the client's default: the system store */
        dir = SYSTEM_CA_DIR;
    }
    if ((file != NULL || dir != NULL) && !SSL_CTX_load_verify_locations(ctx, file, dir)) {
        return fail(errbuf, errlen, "CA %s: cannot load", file != NULL ? file : dir);
    }
    if (cfg->server && cfg->ca_file != NULL) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
        if (names != NULL) {
            SSL_CTX_set_client_CA_list(ctx, names);
        }
        ERR_clear_error();
    }
    return 0;
}

static int verify_mode(const tr_tls_config *cfg, tr_tls_verify *eff)
{
    tr_tls_verify v = cfg->verify;
    if (v == TR_TLS_VERIFY_DEFAULT) {
        v = cfg->server ? TR_TLS_VERIFY_NONE : TR_TLS_VERIFY_REQUIRED;
    }
    *eff = v;
    switch (v) {
    case TR_TLS_VERIFY_NONE:
        return SSL_VERIFY_NONE;
    case TR_TLS_VERIFY_OPTIONAL:
        return SSL_VERIFY_PEER;
    case TR_TLS_VERIFY_REQUIRED:
        return SSL_VERIFY_PEER | (cfg->server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
    default:
        return SSL_VERIFY_NONE;
    }
}

static SSL_CTX *make_ctx(const tr_tls_config *cfg, tr__tls_gen *g, const tr_tls_keypair *kp,
                         char *errbuf, size_t errlen, int *rc)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        *rc = TR_ENOMEM;
        return NULL;
    }
    *rc = TR_ETLS;
    if (!SSL_CTX_set_min_proto_version(ctx, cfg->min_version) ||
        !SSL_CTX_set_max_proto_version(ctx, cfg->max_version)) {
        fail(errbuf, errlen, "versions 0x%x..0x%x", cfg->min_version, cfg->max_version);
        goto fail;
    }
    const char *ciphers = cfg->ciphers != NULL ? cfg->ciphers : DEFAULT_CIPHERS;
    if (!SSL_CTX_set_strict_cipher_list(ctx, ciphers)) {
        fail(errbuf, errlen, "cipher list \"%s\"", ciphers);
        goto fail;
    }
    const char *groups = cfg->groups != NULL ? cfg->groups : DEFAULT_GROUPS;
    if (!SSL_CTX_set1_curves_list(ctx, groups)) {
        fail(errbuf, errlen, "group list \"%s\"", groups);
        goto fail;
    }
    /* A write that returns early after one record, retried from wherever
     * the send queue has the same bytes by then. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (kp != NULL && (*rc = load_keypair(ctx, kp, errbuf, errlen)) < 0) {
        goto fail;
    }
    if ((*rc = load_cas(ctx, cfg, errbuf, errlen)) < 0) {
        goto fail;
    }
    tr_tls_verify v;
    int mode = verify_mode(cfg, &v);
    SSL_CTX_set_verify(ctx, mode, v == TR_TLS_VERIFY_OPTIONAL ? verify_accept_all : NULL);
    if (cfg->server) {
        if (g->alpn_len > 0) {
            SSL_CTX_set_alpn_select_cb(ctx, on_alpn, g);
        }
        if (cfg->no_tickets) {
            SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        }
        /* Sessions resumed across the SNI contexts: one id context. */
        static const unsigned char sid_ctx[] = "troupe";
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    } else if (g->alpn_len > 0 && SSL_CTX_set_alpn_protos(ctx, g->alpn, (unsigned)g->alpn_len)) {
        *rc = TR_ENOMEM;
        goto fail;
    }
    *rc = 0;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static void gen_free(tr__tls_gen *g)
{
    for (size_t i = 0; i < g->n; i++) {
        SSL_CTX_free(g->ctx[i]);
        for (char **p = g->names != NULL ? g->names[i] : NULL; p != NULL && *p != NULL; p++) {
            free(*p);
        }
        free(g->names != NULL ? g->names[i] : NULL);
    }
    free(g->ctx);
    free(g->names);
    free(g);
}

static int check_config(const tr_tls_config *cfg)
{
    if (cfg->server && (cfg->certs == NULL || cfg->ncerts == 0)) {
        return TR_EINVAL;
    }
    if (!cfg->server && cfg->ncerts > 1) {
        return TR_EINVAL;
    }
    for (size_t i = 0; i < cfg->ncerts; i++) {
        const tr_tls_keypair *kp = &cfg->certs[i];
        if ((kp->cert_file == NULL) == (kp->cert_pem == NULL) ||
            (kp->key_file == NULL) == (kp->key_pem == NULL)) {
            return TR_EINVAL; /* exactly one source of each */
        }
    }
    bool ok = cfg->min_version >= TR_TLS_1_2 && cfg->max_version <= TR_TLS_1_3 &&
              cfg->min_version <= cfg->max_version;
    return ok ? 0 : TR_EINVAL;
}

static tr__tls_gen *gen_new(const tr_tls_config *cfg, char *errbuf, size_t errlen, int *err)
{
    int rc = check_config(cfg);
    size_t n = cfg->ncerts > 0 ? cfg->ncerts : 1;
    tr__tls_gen *g = rc == 0 ? calloc(1, sizeof(*g)) : NULL;
    if (g == NULL || (g->ctx = calloc(n, sizeof(*g->ctx))) == NULL ||
        (g->names = calloc(n, sizeof(*g->names))) == NULL) {
        rc = rc < 0 ? rc : TR_ENOMEM;
        goto fail;
    }
    g->refs = 1;
    if (alpn_wire(cfg->alpn, g->alpn, sizeof(g->alpn), &g->alpn_len) < 0) {
        rc = TR_EINVAL;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const tr_tls_keypair *kp = cfg->ncerts > 0 ? &cfg->certs[i] : NULL;
        if ((g->ctx[i] = make_ctx(cfg, g, kp, errbuf, errlen, &rc)) == NULL) {
            goto fail;
        }
        g->n = i + 1;
        if (cfg->server && (g->names[i] = cert_names(g->ctx[i])) == NULL) {
            rc = TR_ENOMEM;
            goto fail;
        }
    }
    if (cfg->server && n > 1) {
        SSL_CTX_set_tlsext_servername_callback(g->ctx[0], on_servername);
        SSL_CTX_set_tlsext_servername_arg(g->ctx[0], g);
    }
    return g;
fail:
    if (g != NULL) {
        gen_free(g);
    }
    *err = rc;
    return NULL;
}

/* ---- the config's deep copy ---- */

static void cfg_free(tr_tls_config *c)
{
    for (size_t i = 0; i < c->ncerts; i++) {
        tr_tls_keypair *kp = (tr_tls_keypair *)&c->certs[i];
        free((char *)kp->cert_file);
        free((char *)kp->key_file);
        free((char *)kp->cert_pem);
        free((char *)kp->key_pem);
    }
    free((tr_tls_keypair *)c->certs);
    free((char *)c->ciphers);
    free((char *)c->groups);
    free((char *)c->alpn);
    free((char *)c->ca_file);
    free((char *)c->ca_dir);
    free((char *)c->ca_pem);
    memset(c, 0, sizeof(*c));
}

static bool dup_str(const char **dst, const char *src)
{
    *dst = src != NULL ? strdup(src) : NULL;
    return src == NULL || *dst != NULL;
}

static int cfg_copy(tr_tls_config *d, const tr_tls_config *s)
{
    *d = *s;
    d->certs = NULL;
    d->ncerts = 0;
    bool ok = dup_str(&d->ciphers, s->ciphers) & dup_str(&d->groups, s->groups) &
              dup_str(&d->alpn, s->alpn) & dup_str(&d->ca_file, s->ca_file) &
              dup_str(&d->ca_dir, s->ca_dir) & dup_str(&d->ca_pem, s->ca_pem);
    tr_tls_keypair *kps = s->ncerts > 0 ? calloc(s->ncerts, sizeof(*kps)) : NULL;
    if (s->ncerts > 0 && kps == NULL) {
        ok = false;
    }
    d->certs = kps;
    for (size_t i = 0; kps != NULL && i < s->ncerts; i++) {
        d->ncerts = i + 1;
        ok &= dup_str(&kps[i].cert_file, s->certs[i].cert_file) &
              dup_str(&kps[i].key_file, s->certs[i].key_file) &
              dup_str(&kps[i].cert_pem, s->certs[i].cert_pem) &
              dup_str(&kps[i].key_pem, s->certs[i].key_pem);
    }
    if (!ok) {
        cfg_free(d);
        return TR_ENOMEM;
    }
    return 0;
}

/* ---- the public API ---- */

void tr_tls_config_defaults(tr_tls_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->min_version = TR_TLS_1_2;
    cfg->max_version = TR_TLS_1_3;
}

tr_tls *tr_tls_new(const tr_tls_config *cfg, char *errbuf, size_t errlen, int *err)
{
    int rc = TR_EINVAL;
    if (errbuf != NULL && errlen > 0) {
        errbuf[0] = '\0';
    }
    tr_tls *t = cfg != NULL ? calloc(1, sizeof(*t)) : NULL;
    if (t == NULL) {
        rc = cfg == NULL ? TR_EINVAL : TR_ENOMEM;
        goto fail;
    }
    if ((rc = cfg_copy(&t->cfg, cfg)) < 0) {
        goto fail_copy;
    }
    if ((t->gen = gen_new(&t->cfg, errbuf, errlen, &rc)) == NULL) {
        goto fail_gen;
    }
    t->refs = 1;
    t->server = cfg->server;
    pthread_mutex_init(&t->mu, NULL);
    return t;
fail_gen:
    cfg_free(&t->cfg);
fail_copy:
    free(t);
fail:
    if (err != NULL) {
        *err = rc;
    }
    return NULL;
}

int tr_tls_reload(tr_tls *tls, const tr_tls_config *cfg, char *errbuf, size_t errlen)
{
    if (tls == NULL || (cfg != NULL && cfg->server != tls->server)) {
        return TR_EINVAL;
    }
    tr_tls_config fresh;
    int rc = cfg_copy(&fresh, cfg != NULL ? cfg : &tls->cfg);
    if (rc < 0) {
        return rc;
    }
    tr__tls_gen *g = gen_new(&fresh, errbuf, errlen, &rc);
    if (g == NULL) {
        cfg_free(&fresh);
        return rc;
    }
    pthread_mutex_lock(&tls->mu);
    tr__tls_gen *old = tls->gen;
    tls->gen = g;
    tr_tls_config prev = tls->cfg;
    tls->cfg = fresh;
    pthread_mutex_unlock(&tls->mu);
    cfg_free(&prev);
    tr__tls_gen_release(old);
    tr_log(TR_LOG_INFO, "event=tls_reload certs=%zu", g->n);
    return 0;
}

void tr__tls_retain(tr_tls *tls)
{
    tr__faa_sc_32(&tls->refs, 1);
}

void tr__tls_release(tr_tls *tls)
{
    if (tls == NULL || tr__faa_sc_32(&tls->refs, (uint32_t)-1) != 1) {
        return;
    }
    tr__tls_gen_release(tls->gen);
    cfg_free(&tls->cfg);
    pthread_mutex_destroy(&tls->mu);
    free(tls);
}

void tr_tls_free(tr_tls *tls)
{
    tr__tls_release(tls);
}

bool tr__tls_is_server(const tr_tls *tls)
{
    return tls->server;
}

tr__tls_gen *tr__tls_gen_acquire(tr_tls *tls)
{
    pthread_mutex_lock(&tls->mu);
    tr__tls_gen *g = tls->gen;
    tr__faa_sc_32(&g->refs, 1);
    pthread_mutex_unlock(&tls->mu);
    return g;
}

void tr__tls_gen_release(tr__tls_gen *g)
{
    if (g != NULL && tr__faa_sc_32(&g->refs, (uint32_t)-1) == 1) {
        gen_free(g);
    }
}
