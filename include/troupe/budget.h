/* troupe: memory budgets for buffered bytes.
 *
 * Every connection limit is per connection (max_frame_bytes, the send
 * queue), so without a budget the memory a server holds grows with the
 * number of peers: 2,000 peers each sending 600 KB of a line that never
 * ends pin 1.2 GB. A budget bounds the total:
 *
 * - input: bytes held in partial input frames (the tail of a frame that
 *   has not completed yet, kept per connection until it does);
 * - output: bytes in send queues.
 *
 * There is one budget for the whole runtime (every server and client on
 * it together; on by default) and one per server (tr_server_config.budget;
 * off by default). A connection counts against both.
 *
 * At the input budget: a connection whose partial frame grows while the
 * budget is spent pauses reading (the backpressure pause: the kernel
 * window then slows the peer, nothing is lost), heaviest holders first;
 * while the budget is spent, connections with no partial frame read in
 * small steps, so a peer whose frames complete within a read keeps
 * flowing. Paused connections resume, lightest first, once the total is
 * back under 7/8 of the budget. A connection paused for grace_ms while its
 * budget is still spent may be closed, heaviest first, until the total is
 * under the budget again: error class TR_ERR_BUDGET, reason TR_ENOBUFS
 * (its policy may say TR_CONTINUE: it then stays paused for another
 * grace_ms). Closes are counted (tr_server_stats.budget_closes,
 * tr_net_budget_stats) and logged once per worker and sweep (every 100
 * ms at most), not once per connection.
 *
 * At the output budget: writes and sends are refused with TR_EBUFFULL, as
 * from a full send queue (no overflow policy applies: the connection is
 * not at fault), until peers read and the total drops.
 *
 * A partial frame's buffer grows by doubling, except where doubling would
 * spend an input budget: it then grows by what the read needs. Counting is
 * per worker, published into the shared total in batches of 16 KiB, so a
 * budget may be overshot by up to 16 KiB per worker, plus one small read
 * (4 KiB) per connection that starts a frame while the budget is spent,
 * plus what workers reading at the same moment add (at most what they
 * already held, so at most the budget again). A shared buffer queued on many connections counts once
 * per connection (as the send queue limit counts it). */
#ifndef TROUPE_BUDGET_H
#define TROUPE_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#include "troupe/error.h"
#include "troupe/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A budget. 0 in a byte limit means unlimited. */
typedef struct tr_budget {
    size_t input_bytes;  /* partial input frames */
    size_t output_bytes; /* send queues */
    /* How long a connection stays paused at the input budget, while the
     * budget is still spent, before it may be closed. 0: at the next
     * sweep. */
    uint32_t grace_ms;
} tr_budget;

/* The runtime's defaults: input 128 MiB, output 512 MiB, grace 5000 ms.
 * Measured (docs/benchmarks.md, "Under attack"): 2,000 peers holding
 * 600 KB partial lines keep troupe-echo under 300 MB of RSS with these, on
 * 2 workers. A server's budget (tr_server_config_defaults) is {0, 0,
 * 5000}: only the runtime's applies. Threads: any thread. */
TR_API void tr_budget_defaults(tr_budget *b);

/* Sets the runtime-wide budget of rt (servers and clients together),
 * taking effect at once for the connections it already has. Returns 0,
 * TR_EINVAL (b NULL) or TR_ENOMEM. Threads: any thread. */
TR_API int tr_net_budget_set(tr_runtime *rt, const tr_budget *b);

/* The runtime-wide budget now. Returns 0, TR_EINVAL or TR_ENOMEM.
 * Threads: any thread. */
TR_API int tr_net_budget_get(tr_runtime *rt, tr_budget *out);

typedef struct tr_budget_stats {
    uint64_t input_bytes;  /* held now (published: see the batching above) */
    uint64_t output_bytes; /* queued now */
    uint64_t pauses;       /* connections paused at an input budget */
    uint64_t closes;       /* connections closed at an input budget */
    uint64_t refused;      /* writes refused at an output budget */
} tr_budget_stats;

/* The runtime-wide counters (over every server and client). Returns 0,
 * TR_EINVAL or TR_ENOMEM. Threads: any thread. */
TR_API int tr_net_budget_stats(tr_runtime *rt, tr_budget_stats *out);

#ifdef __cplusplus
}
#endif

#endif
