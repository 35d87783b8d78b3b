/* The supervisor is an ordinary actor built on the public API plus two
 * internal hooks: spawning children as "supervised" (the runtime's shutdown
 * broadcast skips them, so their supervisor stops them in order) and
 * sending TR_MSG_SHUTDOWN on the priority lane.
 *
 * Stopping children (for shutdown, one-for-all restarts, giving up) is one
 * state machine: stop the highest-indexed running child below `stop_idx`,
 * wait for its DOWN or its deadline (then kill it), repeat; when none is
 * left, do what the phase says. */
#include "troupe/supervisor.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "troupe/log.h"
#include "troupe/timer.h"
#include "actor.h"
#include "msg_impl.h"
#include "util.h"

enum phase { RUNNING, RESTARTING_ALL, STOPPING };

typedef struct child {
    tr_child_spec spec;
    tr_actor_id id; /* TR_ACTOR_NONE while not running */
    uint64_t mref;
    bool done;      /* exited for good: temporary, or transient that ended normally */
} child;

typedef struct sup {
    tr_sup_strategy strategy;
    uint32_t max_restarts;
    uint32_t period_ms;
    child *kids;
    size_t n;
    uint64_t *stamps; /* restart times (ms), oldest first; max_restarts slots */
    uint32_t nstamps;
    enum phase phase;
    size_t stop_idx;     /* children at or above are stopped */
    uint64_t deadline;   /* timer id of the current stop's deadline, 0 if none */
    int exit_reason;     /* for STOPPING */
} sup;

/* tr_supervisor_spawn's copy of the config, owned by the new actor's init. */
typedef struct owned_cfg {
    tr_supervisor_config cfg;
    tr_child_spec kids[];
} owned_cfg;

void tr_supervisor_config_defaults(tr_supervisor_config *cfg)
{
    cfg->strategy = TR_ONE_FOR_ONE;
    cfg->max_restarts = 3;
    cfg->period_ms = 5000;
    cfg->children = NULL;
    cfg->nchildren = 0;
}

void tr_child_spec_defaults(tr_child_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    spec->restart = TR_PERMANENT;
    spec->shutdown_ms = 5000;
    spec->overflow = TR_OVERFLOW_REFUSE;
}

static int start_child(tr_actor *self, sup *s, size_t i)
{
    child *k = &s->kids[i];
    k->done = false;
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);
    opts.mailbox_capacity = k->spec.mailbox_capacity;
    opts.overflow = k->spec.overflow;
    opts.monitor = true;
    opts.monitor_ref = &k->mref;
    tr__spawn_ex ex = {.supervised = true};
    int rc = tr__spawn(tr_actor_runtime(self), k->spec.behavior, k->spec.arg, &opts, &ex, &k->id);
    if (rc < 0) {
        k->id = TR_ACTOR_NONE;
    }
    return rc;
}

static void free_sup(sup *s)
{
    free(s->kids);
    free(s->stamps);
    free(s);
}

static int sup_setup(tr_actor *self, const tr_supervisor_config *cfg)
{
    sup *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return TR_ENOMEM;
    }
    s->strategy = cfg->strategy;
    s->max_restarts = cfg->max_restarts;
    s->period_ms = cfg->period_ms;
    s->n = cfg->nchildren;
    s->kids = calloc(s->n ? s->n : 1, sizeof(child));
    s->stamps = calloc(s->max_restarts ? s->max_restarts : 1, sizeof(uint64_t));
    if (s->kids == NULL || s->stamps == NULL) {
        free_sup(s);
        return TR_ENOMEM;
    }
    for (size_t i = 0; i < s->n; i++) {
        s->kids[i].spec = cfg->children[i];
    }
    tr_actor_set_state(self, s);
    tr_actor_trap_shutdown(self, true);
    for (size_t i = 0; i < s->n; i++) {
        int rc = start_child(self, s, i);
        if (rc < 0) {
            while (i-- > 0) {
                tr_kill(s->kids[i].id, TR_EXIT_KILLED);
            }
            tr_actor_set_state(self, NULL);
            free_sup(s);
            return rc;
        }
    }
    s->stop_idx = s->n;
    return 0;
}

static int sup_init(tr_actor *self, void *arg)
{
    if (arg == NULL) {
        return TR_EINVAL;
    }
    return sup_setup(self, arg);
}

static int sup_init_owned(tr_actor *self, void *arg)
{
    owned_cfg *oc = arg;
    int rc = sup_setup(self, &oc->cfg);
    free(oc);
    return rc;
}

static int send_shutdown(tr_actor_id to)
{
    tr_msg *m = tr_msg_new(TR_MSG_SHUTDOWN, NULL, 0);
    if (m == NULL) {
        return TR_ENOMEM;
    }
    m->flags = TR_MSGF_SYSTEM;
    return tr__send(to, m, true);
}

static void restart_all(tr_actor *self, sup *s)
{
    s->phase = RUNNING;
    s->stop_idx = s->n;
    for (size_t i = 0; i < s->n; i++) {
        if (s->kids[i].spec.restart == TR_TEMPORARY || s->kids[i].done) {
            continue;
        }
        int rc = start_child(self, s, i);
        if (rc < 0) {
            tr_log(TR_LOG_ERROR, "event=supervisor_restart_failed child=%zu error=%d", i, rc);
            s->phase = STOPPING;
            s->exit_reason = rc;
            break;
        }
    }
}

/* Stops the next running child below stop_idx, or finishes the phase. */
static void stop_next(tr_actor *self, sup *s)
{
    while (s->stop_idx > 0) {
        child *k = &s->kids[s->stop_idx - 1];
        if (tr_actor_id_is_none(k->id)) {
            s->stop_idx--;
            continue;
        }
        if (send_shutdown(k->id) < 0) {
            tr_kill(k->id, TR_EXIT_KILLED);
        }
        tr_msg *t = tr_msg_new(TR_MSG__SUP_DEADLINE, NULL, 0);
        if (t == NULL || tr_send_after(self, tr_self(self), t, k->spec.shutdown_ms,
                                       &s->deadline) < 0) {
            /* No deadline possible: do not wait unbounded for this child. */
            s->deadline = 0;
            tr_kill(k->id, TR_EXIT_KILLED);
        }
        return; /* its DOWN moves us on */
    }
    if (s->phase == RESTARTING_ALL) {
        restart_all(self, s);
        if (s->phase == STOPPING) {
            s->stop_idx = s->n;
            stop_next(self, s);
        }
        return;
    }
    tr_exit(self, s->exit_reason);
}

static void begin_stopping(tr_actor *self, sup *s, enum phase phase, int reason)
{
    int busy = s->phase != RUNNING;
    if (phase == STOPPING) {
        if (s->phase != STOPPING) {
            s->exit_reason = reason; /* the first reason to stop is the one reported */
        }
        s->phase = STOPPING;
    } else {
        s->phase = phase;
    }
    if (!busy) {
        s->stop_idx = s->n;
        stop_next(self, s);
    }
}

/* Records a restart; false if that exceeds the intensity. */
static int note_restart(sup *s)
{
    uint64_t now = tr__now_ms();
    uint32_t keep = 0;
    for (uint32_t i = 0; i < s->nstamps; i++) {
        if (now - s->stamps[i] < s->period_ms) {
            s->stamps[keep++] = s->stamps[i];
        }
    }
    s->nstamps = keep;
    if (s->nstamps >= s->max_restarts) {
        return 0;
    }
    s->stamps[s->nstamps++] = now;
    return 1;
}

static void on_down(tr_actor *self, sup *s, tr_msg *m)
{
    size_t i;
    for (i = 0; i < s->n; i++) {
        if (s->kids[i].mref == m->ref && tr_actor_id_eq(s->kids[i].id, m->from)) {
            break;
        }
    }
    if (i == s->n) {
        return;
    }
    child *k = &s->kids[i];
    k->id = TR_ACTOR_NONE;
    int reason = (int)m->reason;
    if (s->phase != RUNNING) {
        if (i + 1 == s->stop_idx) {
            if (s->deadline != 0) {
                tr_timer_cancel(self, s->deadline);
                s->deadline = 0;
            }
            s->stop_idx--;
            stop_next(self, s);
        }
        return;
    }
    int restart = k->spec.restart == TR_PERMANENT ||
                  (k->spec.restart == TR_TRANSIENT && reason != TR_EXIT_NORMAL &&
                   reason != TR_EXIT_SHUTDOWN);
    if (!restart) {
        k->done = true;
        return;
    }
    if (!note_restart(s)) {
        tr_log(TR_LOG_WARN, "event=supervisor_gave_up actor=%llu max_restarts=%u period_ms=%u",
               (unsigned long long)tr_self(self).bits, s->max_restarts, s->period_ms);
        begin_stopping(self, s, STOPPING, TR_EXIT_MAX_RESTARTS);
        return;
    }
    if (s->strategy == TR_ONE_FOR_ALL) {
        begin_stopping(self, s, RESTARTING_ALL, 0);
        return;
    }
    int rc = start_child(self, s, i);
    if (rc < 0) {
        begin_stopping(self, s, STOPPING, rc);
    }
}

static void sup_receive(tr_actor *self, tr_msg *m)
{
    sup *s = tr_actor_state(self);
    switch (m->type) {
    case TR_MSG_DOWN:
        on_down(self, s, m);
        break;
    case TR_MSG_SHUTDOWN:
        begin_stopping(self, s, STOPPING, TR_EXIT_SHUTDOWN);
        break;
    case TR_MSG__SUP_DEADLINE:
        if (m->ref == s->deadline && s->stop_idx > 0) {
            s->deadline = 0;
            tr_kill(s->kids[s->stop_idx - 1].id, TR_EXIT_KILLED);
        }
        break;
    default:
        break;
    }
}

static void sup_terminate(tr_actor *self, int reason)
{
    (void)reason;
    sup *s = tr_actor_state(self);
    /* A forced exit leaves children running: take them along. */
    for (size_t i = s->n; i-- > 0;) {
        if (!tr_actor_id_is_none(s->kids[i].id)) {
            tr_kill(s->kids[i].id, TR_EXIT_KILLED);
        }
    }
    free_sup(s);
}

static const tr_behavior sup_behavior = {
    .name = "supervisor", .init = sup_init, .receive = sup_receive, .terminate = sup_terminate};

static const tr_behavior sup_owned_behavior = {.name = "supervisor",
                                               .init = sup_init_owned,
                                               .receive = sup_receive,
                                               .terminate = sup_terminate};

const tr_behavior *tr_supervisor_behavior(void)
{
    return &sup_behavior;
}

int tr_supervisor_spawn(tr_runtime *rt, const tr_supervisor_config *cfg, const tr_spawn_opts *opts,
                        tr_actor_id *out)
{
    if (cfg == NULL || (cfg->nchildren > 0 && cfg->children == NULL) ||
        cfg->nchildren > 65536) {
        return TR_EINVAL;
    }
    for (size_t i = 0; i < cfg->nchildren; i++) {
        const tr_behavior *b = cfg->children[i].behavior;
        if (b == NULL || b->receive == NULL) {
            return TR_EINVAL;
        }
    }
    owned_cfg *oc = malloc(sizeof(*oc) + cfg->nchildren * sizeof(tr_child_spec));
    if (oc == NULL) {
        return TR_ENOMEM;
    }
    oc->cfg = *cfg;
    if (cfg->nchildren > 0) {
        memcpy(oc->kids, cfg->children, cfg->nchildren * sizeof(tr_child_spec));
    }
    oc->cfg.children = oc->kids;
    int rc = tr_spawn(rt, &sup_owned_behavior, oc, opts, out);
    if (rc < 0) {
        free(oc);
    }
    return rc;
}
