/* troupe-echo: an echo server. Every frame read is written back with the
 * same framing. SIGINT/SIGTERM drain gracefully (5 s); with --tls, SIGHUP
 * reads the certificate and key again (new connections use them).
 *
 *   troupe-echo [--listen HOST:PORT | --listen systemd | --unix PATH] [--tls CERT KEY]
 *               [--udp HOST:PORT] [--unixgram PATH]
 *               [--workers N] [--codec raw|line|length]
 *               [--max-frame BYTES] [--idle-timeout SECONDS]
 *               [--accept reuseport|single]
 *               [--frame-timeout SECONDS] [--memory-budget MB]
 *
 * --frame-timeout: a frame that has started must complete within this
 * long (default 30; 0 = off). --memory-budget: the runtime-wide budget,
 * MB MiB for partial input frames and 4 x MB for send queues (the
 * defaults' ratio: 128 and 512); 0 = unlimited (troupe/budget.h).
 * HOST may be a host name (resolved at start). "--listen systemd" serves
 * the first socket passed by socket activation (systemd's LISTEN_FDS),
 * e.g. under `systemd-socket-activate -l 7007 troupe-echo --listen systemd`.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "troupe/troupe.h"

static int on_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    /* A refused write (queue full) is an error for the policy: with the
     * default policy the connection closes rather than lose bytes. The
     * queue only fills if the peer stops reading, and then the server
     * stops reading too (backpressure), so this is rare. */
    return tr_conn_write(c, data, len);
}

static const tr_handler echo_handler = {.on_frame = on_frame};

static void usage(void)
{
    fprintf(stderr, "usage: troupe-echo [--listen HOST:PORT | --listen systemd | --unix PATH] "
                    "[--tls CERT KEY] "
                    "[--udp HOST:PORT] "
                    "[--unixgram PATH] [--workers N] "
                    "[--codec raw|line|length] [--max-frame BYTES] [--idle-timeout SECONDS] "
                    "[--accept reuseport|single] [--frame-timeout SECONDS] "
                    "[--memory-budget MB]\n");
    exit(2);
}

static tr_codec *make_codec(const char *name, int *err)
{
    if (strcmp(name, "raw") == 0) {
        return tr_codec_raw_new(err);
    }
    if (strcmp(name, "line") == 0) {
        tr_line_codec_config lc;
        tr_line_codec_config_defaults(&lc);
        lc.max_length = (size_t)1 << 30; /* the server's max frame applies */
        return tr_codec_line_new(&lc, err);
    }
    if (strcmp(name, "length") == 0) {
        tr_length_codec_config lc;
        tr_length_codec_config_defaults(&lc);
        lc.strip_header = 4;
        lc.max_frame = (size_t)1 << 30;
        return tr_codec_length_new(&lc, err);
    }
    *err = TR_EINVAL;
    return NULL;
}

/* Datagram echo: every datagram back to its sender, whole. */
static int echo_datagram(tr_dgram *d, const void *data, size_t len, const tr_dgram_addr *from,
                         void *user)
{
    (void)user;
    int rc = tr_dgram_send_to(d, from, data, len);
    return rc < 0 ? rc : 0;
}

/* Starts a datagram echo endpoint on `where`, or exits. */
static tr_dgram *start_datagram_echo(tr_runtime *rt, const char *where)
{
    tr_dgram_config dc;
    tr_dgram_config_defaults(&dc);
    dc.bind = where;
    dc.on_datagram = echo_datagram;
    int err;
    tr_dgram *d = tr_dgram_new(rt, &dc, &err);
    if (d == NULL || (err = tr_dgram_start(d)) < 0) {
        fprintf(stderr, "troupe-echo: datagrams on %s: %s\n", where, tr_strerror(err));
        exit(1);
    }
    char addr[128];
    tr_dgram_address(d, addr, sizeof(addr));
    printf("datagrams on %s\n", addr);
    return d;
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:7007";
    static char unix_addr[128], unixgram_addr[128];
    const char *udp = NULL, *unixgram = NULL;
    const char *codec_name = "line";
    unsigned workers = 0;
    size_t max_frame = 1u << 20;
    long idle_s = 30;
    long frame_s = 30;
    long budget_mb = -1; /* -1: the runtime's defaults */
    tr_accept_mode mode = TR_ACCEPT_REUSEPORT;
    tr_tls_keypair kp = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            usage();
        }
        if (strcmp(a, "--listen") == 0) {
            listen = v;
        } else if (strcmp(a, "--unix") == 0) {
            /* A Unix stream socket at PATH (or @name: abstract). */
            snprintf(unix_addr, sizeof(unix_addr), "unix:%s", v);
            listen = unix_addr;
        } else if (strcmp(a, "--tls") == 0) {
            if (i + 2 >= argc) {
                usage();
            }
            kp.cert_file = v;
            kp.key_file = argv[++i + 1];
        } else if (strcmp(a, "--udp") == 0) {
            udp = v;
        } else if (strcmp(a, "--unixgram") == 0) {
            snprintf(unixgram_addr, sizeof(unixgram_addr), "unix:%s", v);
            unixgram = unixgram_addr;
        } else if (strcmp(a, "--workers") == 0) {
            workers = (unsigned)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--codec") == 0) {
            codec_name = v;
        } else if (strcmp(a, "--max-frame") == 0) {
            max_frame = strtoull(v, NULL, 10);
        } else if (strcmp(a, "--idle-timeout") == 0) {
            idle_s = strtol(v, NULL, 10);
        } else if (strcmp(a, "--frame-timeout") == 0) {
            frame_s = strtol(v, NULL, 10);
        } else if (strcmp(a, "--memory-budget") == 0) {
            budget_mb = strtol(v, NULL, 10);
        } else if (strcmp(a, "--accept") == 0) {
            mode = strcmp(v, "single") == 0 ? TR_ACCEPT_SINGLE : TR_ACCEPT_REUSEPORT;
        } else {
            usage();
        }
        i++;
    }
    int err;
    tr_codec *codec = make_codec(codec_name, &err);
    if (codec == NULL) {
        fprintf(stderr, "troupe-echo: codec %s: %s\n", codec_name, tr_strerror(err));
        return 2;
    }
    /* Block the signals in every thread; main waits for them below. A shell
     * starts background jobs with SIGINT ignored: restore the default first,
     * or sigwait would never see it. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    tr_runtime_config rc;
    tr_runtime_config_defaults(&rc);
    rc.workers = workers;
    tr_runtime *rt = tr_runtime_new(&rc, &err);
    if (rt == NULL || tr_runtime_start(rt) < 0) {
        fprintf(stderr, "troupe-echo: runtime: %s\n", tr_strerror(err));
        return 1;
    }
    if (budget_mb >= 0) {
        tr_budget b;
        tr_budget_defaults(&b);
        b.input_bytes = (size_t)budget_mb << 20;
        b.output_bytes = (size_t)budget_mb << 22;
        tr_net_budget_set(rt, &b);
    }
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = listen;
    cfg.conn.codec = codec;
    cfg.conn.handler = &echo_handler;
    cfg.conn.max_frame_bytes = max_frame;
    cfg.conn.idle_timeout_ms = idle_s > 0 ? (uint32_t)(idle_s * 1000) : 0;
    cfg.conn.frame_timeout_ms = frame_s > 0 ? (uint32_t)(frame_s * 1000) : 0;
    cfg.accept_mode = mode;
    if (strcmp(listen, "systemd") == 0) {
        int n = tr_listen_fds();
        if (n < 1) {
            fprintf(stderr, "troupe-echo: --listen systemd: no socket passed (%s)\n",
                    n < 0 ? tr_strerror(n) : "LISTEN_FDS/LISTEN_PID not set for this process");
            return 1;
        }
        cfg.listen_fd = TR_LISTEN_FDS_START;
    }
    tr_tls *tls = NULL;
    if (kp.cert_file != NULL) {
        tr_tls_config tc;
        tr_tls_config_defaults(&tc);
        tc.server = true;
        tc.certs = &kp;
        tc.ncerts = 1;
        char why[256];
        if ((tls = tr_tls_new(&tc, why, sizeof(why), &err)) == NULL) {
            fprintf(stderr, "troupe-echo: tls: %s (%s)\n", why, tr_strerror(err));
            return 1;
        }
        cfg.conn.tls = tls;
    }
    tr_server *srv = tr_server_new(rt, &cfg, &err);
    if (srv == NULL || (err = tr_server_start(srv)) < 0) {
        fprintf(stderr, "troupe-echo: listen %s: %s\n", listen, tr_strerror(err));
        return 1;
    }
    char addr[80];
    tr_server_address(srv, addr, sizeof(addr));
    printf("listening on %s%s (codec %s, %u workers)\n", addr, tls != NULL ? " with TLS" : "",
           codec_name, tr_runtime_workers(rt));
    tr_dgram *dg_udp = udp != NULL ? start_datagram_echo(rt, udp) : NULL;
    tr_dgram *dg_unix = unixgram != NULL ? start_datagram_echo(rt, unixgram) : NULL;
    fflush(stdout);

    int sig;
    while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP) {
        char why[256] = "";
        int rr = tls != NULL ? tr_tls_reload(tls, NULL, why, sizeof(why)) : TR_ENOTSUP;
        printf("SIGHUP: reload %s%s%s\n", rr == 0 ? "done" : tr_strerror(rr), why[0] ? ": " : "",
               why);
        fflush(stdout);
    }
    printf("signal %d: draining (5 s)\n", sig);
    fflush(stdout);
    int r = tr_server_shutdown(srv, 5000);
    tr_server_stats st;
    tr_server_stats_get(srv, &st);
    printf("stopped: %s; accepted=%llu frames_in=%llu frames_out=%llu budget_pauses=%llu "
           "budget_closes=%llu frame_timeouts=%llu idle_timeouts=%llu\n",
           r == 0 ? "clean" : tr_strerror(r), (unsigned long long)st.accepted,
           (unsigned long long)st.frames_in, (unsigned long long)st.frames_out,
           (unsigned long long)st.budget_pauses, (unsigned long long)st.budget_closes,
           (unsigned long long)st.frame_timeouts, (unsigned long long)st.idle_timeouts);
    tr_server_free(srv);
    tr_dgram_free(dg_udp); /* datagram endpoints stop at once, as the seed's */
    tr_dgram_free(dg_unix);
    tr_runtime_shutdown(rt, 2000);
    tr_runtime_free(rt);
    tr_codec_free(codec);
    tr_tls_free(tls);
    return 0;
}
