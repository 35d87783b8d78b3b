/* troupe-chat: an IRC server on the troupe runtime.
 *
 *   troupe-chat [--listen HOST:PORT] [--tls-listen HOST:PORT --cert FILE --key FILE]
 *               [--workers N] [--max-clients N] [--ping-timeout SECONDS]
 *               [--motd FILE] [--password PASS] [--name NAME]
 *               [--log-level debug|info|warn|error]
 *
 * SIGINT / SIGTERM: every user is told the server is shutting down, then
 * the servers drain (5 s). SIGHUP reads the TLS certificate again. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat.h"

#define MAX_MOTD_LINES 100

typedef struct options {
    const char *listen, *tls_listen, *http_listen, *cert, *key, *motd_file;
    unsigned workers;
    long max_clients, ping_s;
    double flood_burst, flood_per_s;
    long sendq;
    const char *password, *name, *log_level;
} options;

static void usage(FILE *to)
{
    fprintf(
        to,
        "usage: troupe-chat [options]\n"
        "  --listen HOST:PORT      IRC over TCP (default 127.0.0.1:6667)\n"
        "  --tls-listen HOST:PORT  IRC over TLS (needs --cert and --key; e.g. 127.0.0.1:6697)\n"
        "  --cert FILE --key FILE  PEM certificate chain and key (SIGHUP reloads them)\n"
        "  --http-listen HOST:PORT the web page, /metrics and /healthz (default 127.0.0.1:8080;\n"
        "                          \"off\" for none)\n"
        "  --workers N             worker threads (default: one per core)\n"
        "  --max-clients N         connections at most (default 10000)\n"
        "  --ping-timeout SECONDS  silence before a PING, and again before the drop (default 120)\n"
        "  --motd FILE             message of the day\n"
        "  --password PASS         required with PASS before NICK/USER\n"
        "  --flood BURST:PER_S     lines at once, then per second (default 20:4)\n"
        "  --sendq BYTES           a user's send queue; past it the user is closed (512 KiB)\n"
        "  --name NAME             the server's name (default troupe.chat)\n"
        "  --log-level LEVEL       debug, info, warn (default) or error\n"
        "Connect with:  nc 127.0.0.1 6667   (then NICK you / USER you 0 * :You)\n"
        "               irssi -c 127.0.0.1 -p 6667\n");
}

/* v as a whole number from min to max into *out; otherwise says why. */
static bool number(const char *opt, const char *v, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < min || n > max) {
        fprintf(stderr, "troupe-chat: %s wants a whole number from %ld to %ld, not '%s'\n", opt,
                min, max, v);
        return false;
    }
    *out = n;
    return true;
}

static bool flood(const char *v, options *o)
{
    char tail;
    if (sscanf(v, "%lf:%lf%c", &o->flood_burst, &o->flood_per_s, &tail) != 2 ||
        !(o->flood_burst >= 1 && o->flood_burst <= 1e6) ||
        !(o->flood_per_s > 0 && o->flood_per_s <= 1e6)) {
        fprintf(stderr,
                "troupe-chat: --flood wants BURST:PER_S (BURST 1 to 1e6, PER_S above 0, "
                "up to 1e6), not '%s'\n",
                v);
        return false;
    }
    return true;
}

static bool level(const char *v)
{
    if (strcmp(v, "debug") == 0 || strcmp(v, "info") == 0 || strcmp(v, "warn") == 0 ||
        strcmp(v, "error") == 0) {
        return true;
    }
    fprintf(stderr, "troupe-chat: --log-level wants debug, info, warn or error, not '%s'\n", v);
    return false;
}

/* Returns 0, or -1 after saying what is wrong (the caller prints usage). */
static int parse(int argc, char **argv, options *o)
{
    *o = (options){.listen = "127.0.0.1:6667",
                   .http_listen = "127.0.0.1:8080",
                   .max_clients = 10000,
                   .ping_s = 120,
                   .name = "troupe.chat",
                   .log_level = "warn",
                   .flood_burst = 20,
                   .flood_per_s = 4,
                   .sendq = 512 * 1024};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        static const char *const known[] = {
            "--listen",  "--tls-listen",  "--http-listen",  "--cert",     "--key",
            "--workers", "--max-clients", "--ping-timeout", "--motd",     "--password",
            "--name",    "--flood",       "--sendq",        "--log-level"};
        bool is_known = false;
        for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
            is_known |= strcmp(a, known[k]) == 0;
        }
        if (!is_known) {
            fprintf(stderr, "troupe-chat: unknown option %s\n", a);
            return -1;
        }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        if (v == NULL) {
            fprintf(stderr, "troupe-chat: %s wants a value\n", a);
            return -1;
        }
        long n = 0;
        bool ok = true;
        if (strcmp(a, "--listen") == 0) {
            o->listen = v;
        } else if (strcmp(a, "--tls-listen") == 0) {
            o->tls_listen = v;
        } else if (strcmp(a, "--http-listen") == 0) {
            o->http_listen = v;
        } else if (strcmp(a, "--cert") == 0) {
            o->cert = v;
        } else if (strcmp(a, "--key") == 0) {
            o->key = v;
        } else if (strcmp(a, "--workers") == 0) {
            ok = number(a, v, 0, 1024, &n); /* 0: one per core */
            o->workers = (unsigned)n;
        } else if (strcmp(a, "--max-clients") == 0) {
            ok = number(a, v, 0, 10000000, &o->max_clients);
        } else if (strcmp(a, "--ping-timeout") == 0) {
            ok = number(a, v, 1, 86400, &o->ping_s);
        } else if (strcmp(a, "--motd") == 0) {
            o->motd_file = v;
        } else if (strcmp(a, "--password") == 0) {
            o->password = v;
        } else if (strcmp(a, "--name") == 0) {
            o->name = v;
        } else if (strcmp(a, "--flood") == 0) {
            ok = flood(v, o);
        } else if (strcmp(a, "--sendq") == 0) {
            ok = number(a, v, 4096, 1L << 30, &o->sendq);
        } else { /* --log-level */
            ok = level(v);
            o->log_level = v;
        }
        if (!ok) {
            return -1;
        }
    }
    if ((o->tls_listen == NULL) != (o->cert == NULL) || (o->cert == NULL) != (o->key == NULL)) {
        fprintf(stderr, "troupe-chat: --tls-listen, --cert and --key go together\n");
        return -1;
    }
    return 0;
}

/* The MOTD file's lines (at most MAX_MOTD_LINES, each cut to 400 bytes). */
static char **read_motd(const char *path, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    char **lines = calloc(MAX_MOTD_LINES, sizeof(*lines));
    char buf[1024];
    while (lines != NULL && *n < MAX_MOTD_LINES && fgets(buf, sizeof(buf), f) != NULL) {
        buf[strcspn(buf, "\r\n")] = '\0';
        buf[400] = '\0';
        lines[(*n)++] = strdup(buf);
    }
    fclose(f);
    return lines;
}

static tr_log_level parse_level(const char *s)
{
    return strcmp(s, "debug") == 0   ? TR_LOG_DEBUG
           : strcmp(s, "info") == 0  ? TR_LOG_INFO
           : strcmp(s, "error") == 0 ? TR_LOG_ERROR
                                     : TR_LOG_WARN;
}

static tr_server *serve(chat *ch, const options *o, const char *listen, tr_codec *codec,
                        tr_tls *tls)
{
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = listen;
    cfg.conn.codec = codec;
    cfg.conn.handler = &chat_session_handler;
    cfg.conn.user = ch;
    cfg.conn.max_frame_bytes = IRC_MAX_LINE - 2;
    cfg.conn.idle_timeout_ms = (uint32_t)o->ping_s * 1000;
    cfg.conn.send_queue_bytes = ch->cfg.sendq_bytes;
    cfg.conn.high_watermark = ch->cfg.sendq_bytes / 2;
    cfg.conn.low_watermark = ch->cfg.sendq_bytes / 8;
    cfg.conn.send_overflow = TR_OVERFLOW_EXIT;
    cfg.conn.linger_ms = 2000;
    cfg.conn.tls = tls;
    int err;
    tr_server *srv = tr_server_new(ch->rt, &cfg, &err);
    if (srv == NULL || (err = tr_server_start(srv)) < 0) {
        fprintf(stderr, "troupe-chat: listen %s: %s\n", listen, tr_strerror(err));
        exit(1);
    }
    char addr[128];
    tr_server_address(srv, addr, sizeof(addr));
    printf("IRC%s on %s\n", tls != NULL ? " over TLS" : "", addr);
    return srv;
}

int main(int argc, char **argv)
{
    options o;
    if (parse(argc, argv, &o) < 0) {
        usage(stderr);
        return 2;
    }
    tr_log_set_level(parse_level(o.log_level));
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    static chat ch;
    char created[64];
    time_t now = time(NULL);
    strftime(created, sizeof(created), "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    size_t motd_n = 0;
    char **motd = o.motd_file != NULL ? read_motd(o.motd_file, &motd_n) : NULL;
    if (o.motd_file != NULL && motd == NULL) {
        fprintf(stderr, "troupe-chat: --motd %s: cannot read it\n", o.motd_file);
        return 1;
    }
    ch.cfg = (chat_config){.name = o.name,
                           .password = o.password,
                           .motd = (const char *const *)motd,
                           .motd_n = motd_n,
                           .max_clients = (uint32_t)o.max_clients,
                           .ping_timeout_ms = (uint32_t)o.ping_s * 1000,
                           .flood_burst = o.flood_burst,
                           .flood_per_s = o.flood_per_s,
                           .sendq_bytes = (size_t)o.sendq,
                           .created = created};
    int err;
    tr_runtime_config rc;
    tr_runtime_config_defaults(&rc);
    rc.workers = o.workers;
    chat_chan_set_init(&ch.chans);
    ch.rt = tr_runtime_new(&rc, &err);
    if (ch.rt == NULL || (err = tr_runtime_start(ch.rt)) < 0 ||
        (err = chat_registry_start(&ch)) < 0) {
        fprintf(stderr, "troupe-chat: runtime: %s\n", tr_strerror(err));
        return 1;
    }
    tr_line_codec_config lc;
    tr_line_codec_config_defaults(&lc);
    lc.max_length = IRC_MAX_LINE - 2;
    lc.crlf = true;
    tr_codec *lines = tr_codec_line_new(&lc, &err);
    tr_tls *tls = NULL;
    if (o.tls_listen != NULL) {
        tr_tls_keypair kp = {.cert_file = o.cert, .key_file = o.key};
        tr_tls_config tc;
        tr_tls_config_defaults(&tc);
        tc.server = true;
        tc.certs = &kp;
        tc.ncerts = 1;
        char why[256];
        if ((tls = tr_tls_new(&tc, why, sizeof(why), &err)) == NULL) {
            fprintf(stderr, "troupe-chat: TLS: %s\n", why[0] ? why : tr_strerror(err));
            return 1;
        }
    }
    tr_server *plain = serve(&ch, &o, o.listen, lines, NULL);
    tr_server *secure = tls != NULL ? serve(&ch, &o, o.tls_listen, lines, tls) : NULL;
    static chat_listener ls[2];
    size_t nls = 0;
    ls[nls++] = (chat_listener){"irc", plain};
    if (secure != NULL) {
        ls[nls++] = (chat_listener){"ircs", secure};
    }
    tr_http *http = NULL;
    tr_server *web = NULL;
    if (strcmp(o.http_listen, "off") != 0) {
        ch.listeners = ls; /* before the HTTP server starts: read-only after */
        ch.nlisteners = nls;
        web = chat_http_start(&ch, o.http_listen, &http, &err);
        if (web == NULL) {
            fprintf(stderr, "troupe-chat: listen %s: %s\n", o.http_listen, tr_strerror(err));
            return 1;
        }
        char addr[128];
        tr_server_address(web, addr, sizeof(addr));
        printf("HTTP on %s (the page, /metrics, /healthz)\n", addr);
    }
    char hostport[128];
    tr_server_address(plain, hostport, sizeof(hostport));
    char *colon = strrchr(hostport, ':');
    if (colon != NULL) {
        *colon = ' '; /* nc wants HOST PORT */
    }
    printf("troupe-chat %s ready (%u workers). Try: nc %s  then  NICK you / USER you 0 * :You\n",
           o.name, tr_runtime_workers(ch.rt), hostport);
    fflush(stdout);

    int sig;
    while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP) {
        char why[256] = "";
        int r = tls != NULL ? tr_tls_reload(tls, NULL, why, sizeof(why)) : TR_ENOTSUP;
        printf("SIGHUP: TLS reload %s %s\n", r == 0 ? "done" : tr_strerror(r), why);
        fflush(stdout);
    }
    printf("signal %d: telling everyone, draining (5 s)\n", sig);
    fflush(stdout);
    tr_server_shutdown(plain, 5000);
    if (secure != NULL) {
        tr_server_shutdown(secure, 5000);
    }
    if (web != NULL) {
        tr_server_shutdown(web, 2000);
    }
    printf("stopped: %llu registrations, %llu lines in, %llu deliveries\n",
           (unsigned long long)chat_stat_get(&ch.st.registrations),
           (unsigned long long)chat_stat_get(&ch.st.lines_in),
           (unsigned long long)chat_stat_get(&ch.st.deliveries));
    tr_server_free(plain);
    tr_server_free(secure);
    tr_server_free(web);
    tr_http_free(http);
    tr_runtime_shutdown(ch.rt, 2000);
    tr_runtime_free(ch.rt);
    chat_chan_set_fini(&ch.chans);
    tr_codec_free(lines);
    tr_tls_free(tls);
    for (size_t i = 0; i < motd_n; i++) {
        free(motd[i]);
    }
    free(motd);
    return 0;
}
