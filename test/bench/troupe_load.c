/* troupe-load: load generator for echo servers (troupe-echo, ref-echo,
 * ref-tls, ref-udp).
 *
 *   troupe-load echo  --connect TARGET -c CONNS -s SIZE -p PIPELINE -d SECONDS
 *                     [--codec raw|line|length] [--threads N] [--warmup SECONDS] [--tls]
 *   troupe-load hold  --connect TARGET -c CONNS -d SECONDS [--verify] [-s SIZE] [--codec C]
 *   troupe-load churn --connect TARGET -c WORKERS -d SECONDS [-s SIZE] [--codec C]
 *                     [--threads N]
 *   troupe-load handshake --connect TARGET -c SLOTS -d SECONDS [--warmup SECONDS]
 *                     [-s SIZE] [--codec C]
 *   troupe-load udp   --connect TARGET -c SOCKETS -p PIPELINE -d SECONDS [-s SIZE]
 *                     [--warmup SECONDS] [--dgram-timeout-ms MS]
 *
 * TARGET is HOST:PORT, [V6]:PORT or unix:/PATH (unix:@NAME: abstract).
 * --tls (echo) and the handshake mode speak TLS 1.3 (BoringSSL, no
 * verification, no resumption); echo completes every handshake first.
 * udp sends datagrams (a sequence number and pattern bytes), checks every
 * reply, and counts a datagram unanswered after the timeout as lost.
 *
 * A message is SIZE payload bytes, framed by the codec: raw sends the payload
 * as is, line appends '\n' (the payload never contains one), length prepends
 * a 4-byte big-endian length. Payload bytes come from a fixed pseudo-random
 * table at an offset that depends on the connection and the sequence number,
 * so every echoed byte is checked against what that request sent; a reply
 * swapped between requests or connections is a mismatch.
 *
 * Only loopback targets are accepted (a policy of the workplace).
 * The last line of output is machine-readable: RESULT mode=... key=value ...
 * Exit status: 0 when every check passed, 1 on any error, 2 on bad usage. */

#include "load.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mode_names[] = {"echo", "hold", "churn", "handshake", "udp"};
#define NMODES (sizeof(mode_names) / sizeof(mode_names[0]))

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage:\n"
               "  troupe-load echo  --connect TARGET [-c CONNS] [-s SIZE] [-p PIPELINE]\n"
               "                    [-d SECONDS] [--warmup SECONDS] [--codec raw|line|length]\n"
               "                    [--threads N] [--tls]\n"
               "  troupe-load hold  --connect TARGET -c CONNS [-d SECONDS] [--verify]\n"
               "                    [-s SIZE] [--codec raw|line|length]\n"
               "  troupe-load churn --connect TARGET [-c WORKERS] [-d SECONDS] [-s SIZE]\n"
               "                    [--codec raw|line|length] [--threads N]\n"
               "  troupe-load handshake --connect TARGET [-c SLOTS] [-d SECONDS]\n"
               "                    [--warmup SECONDS] [-s SIZE] [--codec raw|line|length]\n"
               "  troupe-load udp   --connect TARGET [-c SOCKETS] [-p PIPELINE] [-d SECONDS]\n"
               "                    [--warmup SECONDS] [-s SIZE] [--dgram-timeout-ms MS]\n"
               "TARGET: HOST:PORT, [V6]:PORT or unix:/PATH. Loopback targets only.\n"
               "Defaults: -c 100 -s 64 -p 1 -d 5 --codec raw --threads 1 --warmup 0\n"
               "          (hold: -s 16, churn: -s 16). SIZE is payload bytes; line adds '\\n',\n"
               "          length adds a 4-byte big-endian prefix; udp: the datagram's size\n"
               "          (at least 8), --dgram-timeout-ms 200, -p at most 64.\n"
               "          --connect-timeout SECONDS (default 10) bounds opening connections\n"
               "          (and, with --tls, the handshakes).\n"
               "The last line is 'RESULT mode=... key=value ...'.\n");
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    if (argc < 2) {
        return -1;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        exit(0);
    }
    int m = -1;
    for (int k = 0; k < (int)NMODES; k++) {
        if (strcmp(argv[1], mode_names[k]) == 0) {
            m = k;
        }
    }
    if (m < 0) {
        fprintf(stderr, "troupe-load: unknown mode '%s'\n", argv[1]);
        return -1;
    }
    opt.mode = (enum mode)m;
    bool size_set = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d = 0;
        if (strcmp(a, "--verify") == 0) {
            opt.verify = true;
            continue;
        }
        if (strcmp(a, "--tls") == 0) {
            opt.tls = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (v == NULL) {
            fprintf(stderr, "troupe-load: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--connect") == 0) {
            opt.connect = v;
        } else if (strcmp(a, "-c") == 0 && parse_num(v, 1, 10000000, &d) == 0) {
            opt.conns = (int)d;
        } else if (strcmp(a, "-s") == 0 && parse_num(v, 1, 64 * 1024 * 1024, &d) == 0) {
            opt.size = (size_t)d;
            size_set = true;
        } else if (strcmp(a, "-p") == 0 && parse_num(v, 1, 100000, &d) == 0) {
            opt.pipeline = (int)d;
        } else if (strcmp(a, "-d") == 0 && parse_num(v, 0, 86400, &d) == 0) {
            opt.duration_s = d;
        } else if (strcmp(a, "--warmup") == 0 && parse_num(v, 0, 3600, &d) == 0) {
            opt.warmup_s = d;
        } else if (strcmp(a, "--threads") == 0 && parse_num(v, 1, MAX_THREADS, &d) == 0) {
            opt.threads = (int)d;
        } else if (strcmp(a, "--dgram-timeout-ms") == 0 && parse_num(v, 1, 60000, &d) == 0) {
            opt.dgram_timeout_ms = d;
        } else if (strcmp(a, "--connect-timeout") == 0 && parse_num(v, 0.1, 600, &d) == 0) {
            opt.connect_timeout_s = d;
        } else if (strcmp(a, "--codec") == 0) {
            int c = -1;
            for (int k = 0; k < 3; k++) {
                if (strcmp(v, codec_names[k]) == 0) {
                    c = k;
                }
            }
            if (c < 0) {
                fprintf(stderr, "troupe-load: unknown codec '%s'\n", v);
                return -1;
            }
            opt.codec = (enum codec)c;
        } else {
            fprintf(stderr, "troupe-load: bad option or value: %s %s\n", a, v);
            return -1;
        }
    }
    if (opt.connect == NULL) {
        fprintf(stderr, "troupe-load: --connect HOST:PORT is required\n");
        return -1;
    }
    if (!size_set && (opt.mode == MODE_HOLD || opt.mode == MODE_CHURN)) {
        opt.size = 16;
    }
    if (opt.tls && opt.mode != MODE_ECHO) {
        fprintf(stderr, "troupe-load: --tls is for echo (handshake always speaks TLS)\n");
        return -1;
    }
    if ((opt.mode == MODE_HANDSHAKE || opt.mode == MODE_UDP) && opt.threads > 1) {
        fprintf(stderr, "troupe-load: %s runs on one thread\n", mode_names[opt.mode]);
        return -1;
    }
    if (opt.threads > opt.conns) {
        opt.threads = opt.conns;
    }
    if ((opt.mode == MODE_ECHO || opt.mode == MODE_HANDSHAKE || opt.mode == MODE_UDP) &&
        opt.duration_s <= 0) {
        fprintf(stderr, "troupe-load: %s needs -d > 0\n", mode_names[opt.mode]);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0) {
        usage(stderr);
        return 2;
    }
    if (parse_target(opt.connect) < 0) {
        return 2;
    }
    if (pattern_init(opt.size) < 0) {
        fprintf(stderr, "troupe-load: out of memory\n");
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if ((opt.tls || opt.mode == MODE_HANDSHAKE) && tls_client_init() < 0) {
        pattern_free();
        return 1;
    }
    int rc;
    switch (opt.mode) {
    case MODE_ECHO:
        rc = run_echo();
        break;
    case MODE_HOLD:
        rc = run_hold();
        break;
    case MODE_CHURN:
        rc = run_churn();
        break;
    case MODE_HANDSHAKE:
        rc = run_handshake();
        break;
    case MODE_UDP:
        rc = run_udp();
        break;
    default:
        rc = 2;
        break;
    }
    tls_client_free();
    pattern_free();
    return rc;
}
