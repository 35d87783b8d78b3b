/* A throwaway PKI for the TLS tests (see certs.h). */
#include "certs.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/obj.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define DAY (24L * 3600)

static EVP_PKEY *new_key(void)
{
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    EVP_PKEY *k = EVP_PKEY_new();
    if (ec == NULL || k == NULL || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(k, ec)) {
        EC_KEY_free(ec);
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

static bool add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    bool ok = e != NULL && X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok;
}

/* A certificate for key, named cn, valid from..to seconds from now,
 * signed by issuer (NULL: self-signed). san NULL: none. */
static X509 *new_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                      long from, long to, bool ca, const char *san)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    bool ok = x != NULL && name != NULL && X509_set_version(x, X509_VERSION_3) &&
              ASN1_INTEGER_set(X509_get_serialNumber(x), serial++) &&
              X509_gmtime_adj(X509_getm_notBefore(x), from) &&
              X509_gmtime_adj(X509_getm_notAfter(x), to) && X509_set_pubkey(x, key) &&
              X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const uint8_t *)cn, -1, -1,
                                         0) &&
              X509_set_subject_name(x, name) &&
              X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name);
    X509 *signer = issuer != NULL ? issuer : x;
    ok = ok && add_ext(x, signer, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
    ok = ok && add_ext(x, signer, NID_key_usage,
                       ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    ok = ok && add_ext(x, signer, NID_subject_key_identifier, "hash");
    if (!ca) {
        ok = ok && add_ext(x, signer, NID_ext_key_usage, "serverAuth,clientAuth");
    }
    if (san != NULL) {
        ok = ok && add_ext(x, signer, NID_subject_alt_name, san);
    }
    ok = ok && X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256());
    X509_NAME_free(name);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static bool write_pem(const char *path, X509 *x, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return false;
    }
    bool ok = x != NULL ? PEM_write_X509(f, x) : PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    return fclose(f) == 0 && ok;
}

static bool issue(const tr_test_certs *c, tr_test_pem *out, const char name[static 1], const char *cn,
                  X509 *ca, EVP_PKEY *ca_key, long from, long to, const char *san)
{
    snprintf(out->cert, sizeof(out->cert), "%s/%s.pem", c->dir, name);
    snprintf(out->key, sizeof(out->key), "%s/%s.key", c->dir, name);
    EVP_PKEY *k = new_key();
    X509 *x = k != NULL ? new_cert(k, cn, ca, ca_key, from, to, false, san) : NULL;
    bool ok = x != NULL && write_pem(out->cert, x, NULL) && write_pem(out->key, NULL, k);
    X509_free(x);
    EVP_PKEY_free(k);
    return ok;
}

static X509 *make_ca(const char *path, const char *cn, EVP_PKEY **key)
{
    *key = new_key();
    X509 *x = *key != NULL ? new_cert(*key, cn, NULL, NULL, -DAY, 30 * DAY, true, NULL) : NULL;
    if (x != NULL && !write_pem(path, x, NULL)) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

int tr_test_certs_make(tr_test_certs *c)
{
    memset(c, 0, sizeof(*c));
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    snprintf(c->dir, sizeof(c->dir), "%s/troupe-pki-XXXXXX", tmp);
    if (mkdtemp(c->dir) == NULL) {
        return -1;
    }
    snprintf(c->ca, sizeof(c->ca), "%s/ca.pem", c->dir);
    snprintf(c->rogue_ca, sizeof(c->rogue_ca), "%s/rogue-ca.pem", c->dir);
    EVP_PKEY *ck = NULL, *rk = NULL;
    X509 *ca = make_ca(c->ca, "troupe test CA", &ck);
    X509 *rca = make_ca(c->rogue_ca, "rogue CA", &rk);
    const char *local = "DNS:localhost,IP:127.0.0.1,IP:::1";
    bool ok = ca != NULL && rca != NULL &&
              issue(c, &c->server, "server", "localhost", ca, ck, -DAY, 30 * DAY, local) &&
              issue(c, &c->other, "other", "other.test", ca, ck, -DAY, 30 * DAY,
                    "DNS:other.test,DNS:*.wild.test") &&
              issue(c, &c->client, "client", "client", ca, ck, -DAY, 30 * DAY, NULL) &&
              issue(c, &c->expired, "expired", "localhost", ca, ck, -3 * DAY, -DAY, local) &&
              issue(c, &c->rogue, "rogue", "localhost", rca, rk, -DAY, 30 * DAY, local);
    X509_free(ca);
    X509_free(rca);
    EVP_PKEY_free(ck);
    EVP_PKEY_free(rk);
    if (!ok) {
        tr_test_certs_remove(c);
        return -1;
    }
    return 0;
}

void tr_test_certs_remove(const tr_test_certs *c)
{
    const tr_test_pem *pems[] = {&c->server, &c->other, &c->client, &c->expired, &c->rogue};
    for (size_t i = 0; i < sizeof(pems) / sizeof(pems[0]); i++) {
        unlink(pems[i]->cert);
        unlink(pems[i]->key);
    }
    unlink(c->ca);
    unlink(c->rogue_ca);
    rmdir(c->dir);
}
