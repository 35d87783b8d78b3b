/* Test helpers: a throwaway PKI made at test time (BoringSSL, EC P-256
 * keys), written as PEM files in a fresh temporary folder.
 *
 * - ca: the trusted root; server (CN localhost; DNS:localhost,
 *   IP:127.0.0.1, IP:::1), other (DNS:other.test, *.wild.test), client
 *   (CN client) and expired (localhost, valid until yesterday) are signed
 *   by it.
 * - rogue_ca and rogue (localhost): a second root nobody trusts. */
#ifndef TROUPE_TEST_CERTS_H
#define TROUPE_TEST_CERTS_H

#define TR_TEST_PATH 320

typedef struct tr_test_pem {
    char cert[TR_TEST_PATH], key[TR_TEST_PATH];
} tr_test_pem;

typedef struct tr_test_certs {
    char dir[200];
    char ca[TR_TEST_PATH], rogue_ca[TR_TEST_PATH];
    tr_test_pem server, other, client, expired, rogue;
} tr_test_certs;

/* Makes the folder and the files. Returns 0 or -1. */
int tr_test_certs_make(tr_test_certs *out);

/* Removes the files and the folder. */
void tr_test_certs_remove(const tr_test_certs *c);

#endif
