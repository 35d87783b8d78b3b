/* Tests for runtime/slot.c: generation-checked actor ids, pins, and the
 * exactly-one-reclaimer rule. The table never dereferences the actor and
 * worker pointers it stores, so plain markers stand in for them. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "slot.h"
#include "troupe/troupe.h"
#include "tsan_criterion.h"
#include "wait.h"

TestSuite(slot, .timeout = 60.0);

static char fake_actor[4], fake_worker;
#define ACTOR(i) ((struct tr_actor *)(void *)&fake_actor[i])
#define WORKER ((struct tr__worker *)(void *)&fake_worker)

static uint32_t index_of(tr_actor_id id)
{
    return tr__id_index(id);
}

static uint64_t gen_of(tr_actor_id id)
{
    return tr__id_gen(id);
}

Test(slot, alloc_gives_a_live_nonzero_id_for_the_actor)
{
    tr_actor_id id;
    cr_assert_eq(tr__slot_alloc(ACTOR(0), WORKER, 0, 0, &id), 0);
    cr_assert(!tr_actor_id_is_none(id));
    cr_assert_geq(gen_of(id), 1, "generation 0 never appears");
    tr__slot *s = tr__slot_get(id);
    cr_assert_not_null(s);
    cr_assert_eq(s->index, index_of(id));
    cr_assert_eq(s->actor, ACTOR(0));
    cr_assert_eq(s->worker, WORKER);
    cr_assert(tr__slot_is_alive(s, id));
    cr_assert(tr__slot_kill(s));
    tr__slot_release(s);
}

Test(slot, get_of_none_or_unallocated_index_is_null)
{
    cr_assert_null(tr__slot_get(TR_ACTOR_NONE));
    /* Index far beyond any chunk allocated so far. */
    cr_assert_null(tr__slot_get((tr_actor_id){(1ull << TR__ID_INDEX_BITS) | 0x00fff000u}));
}

Test(slot, distinct_live_actors_get_distinct_ids)
{
    tr_actor_id a, b;
    cr_assert_eq(tr__slot_alloc(ACTOR(0), WORKER, 0, 0, &a), 0);
    cr_assert_eq(tr__slot_alloc(ACTOR(1), WORKER, 0, 0, &b), 0);
    cr_assert_neq(index_of(a), index_of(b));
    cr_assert_eq(tr__slot_get(a)->actor, ACTOR(0));
    cr_assert_eq(tr__slot_get(b)->actor, ACTOR(1));
    cr_assert(tr__slot_kill(tr__slot_get(a)));
    tr__slot_release(tr__slot_get(a));
    cr_assert(tr__slot_kill(tr__slot_get(b)));
    tr__slot_release(tr__slot_get(b));
}

Test(slot, kill_without_pins_makes_the_killer_reclaim)
{
    tr_actor_id id;
    tr__slot_alloc(ACTOR(0), WORKER, 0, 0, &id);
    tr__slot *s = tr__slot_get(id);
    cr_assert(tr__slot_kill(s), "no pins: the killer reclaims");
    cr_assert_not(tr__slot_is_alive(s, id));
    cr_assert_not(tr__slot_pin(s, id), "a dead actor cannot be pinned");
    tr__slot_release(s);
}

Test(slot, kill_with_pins_leaves_reclaim_to_the_last_unpin)
{
    tr_actor_id id;
    tr__slot_alloc(ACTOR(0), WORKER, 0, 0, &id);
    tr__slot *s = tr__slot_get(id);
    cr_assert(tr__slot_pin(s, id));
    cr_assert(tr__slot_pin(s, id));
    cr_assert_not(tr__slot_kill(s), "pinned: the killer must not reclaim");
    cr_assert_not(tr__slot_pin(s, id), "no new pins once dead");
    cr_assert_not(tr__slot_unpin(s), "one pin remains");
    cr_assert(tr__slot_unpin(s), "the last unpin of a dead actor reclaims");
    tr__slot_release(s);
}

Test(slot, unpin_of_a_live_actor_never_reclaims)
{
    tr_actor_id id;
    tr__slot_alloc(ACTOR(0), WORKER, 0, 0, &id);
    tr__slot *s = tr__slot_get(id);
    cr_assert(tr__slot_pin(s, id));
    cr_assert_not(tr__slot_unpin(s));
    cr_assert(tr__slot_is_alive(s, id));
    cr_assert(tr__slot_kill(s));
    tr__slot_release(s);
}

Test(slot, release_makes_old_ids_stale_and_the_index_is_reused_with_a_new_generation)
{
    tr_actor_id old, fresh;
    tr__slot_alloc(ACTOR(0), WORKER, 0, 0, &old);
    tr__slot *s = tr__slot_get(old);
    cr_assert(tr__slot_kill(s));
    tr__slot_release(s);
    cr_assert_not(tr__slot_is_alive(s, old));
    cr_assert_not(tr__slot_pin(s, old));

    cr_assert_eq(tr__slot_alloc(ACTOR(1), WORKER, 0, 0, &fresh), 0);
    cr_assert_eq(index_of(fresh), index_of(old), "the free list hands the slot out again");
    cr_assert_eq(gen_of(fresh), gen_of(old) + 1);
    cr_assert_not(tr_actor_id_eq(fresh, old));
    cr_assert_eq(tr__slot_get(fresh), s);
    cr_assert_not(tr__slot_is_alive(s, old), "the stale id stays dead after reuse");
    cr_assert_not(tr__slot_pin(s, old), "the stale id cannot pin the new actor");
    cr_assert(tr__slot_is_alive(s, fresh));
    cr_assert(tr__slot_pin(s, fresh));
    cr_assert_not(tr__slot_unpin(s));
    cr_assert(tr__slot_kill(s));
    tr__slot_release(s);
}

Test(slot, table_grows_past_one_chunk)
{
    enum { N = 5000 }; /* a chunk holds 4096 */
    tr_actor_id *ids = malloc(N * sizeof(*ids));
    for (int i = 0; i < N; i++) {
        cr_assert_eq(tr__slot_alloc(ACTOR(0), WORKER, 0, 0, &ids[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        tr__slot *s = tr__slot_get(ids[i]);
        cr_assert_not_null(s);
        cr_assert(tr__slot_is_alive(s, ids[i]));
        cr_assert(tr__slot_kill(s));
        tr__slot_release(s);
    }
    free(ids);
}

/* ---- concurrency ---- */

#define PINNERS 3
#define ROUNDS 300

static uint64_t reclaims, cur_id, round_no, round_done, pins_total;

static void *pinner(void *arg)
{
    (void)arg;
    for (uint64_t r = 1; r <= ROUNDS; r++) {
        while (tr_test_load(&round_no) < r) {
            sched_yield(); /* wait for the round's slot; 2 cores, 4 threads */
        }
        tr_actor_id id = {tr_test_load(&cur_id)};
        tr__slot *s = tr__slot_get(id);
        while (tr__slot_pin(s, id)) {
            tr_test_add(&pins_total, 1);
            if (tr__slot_unpin(s)) {
                tr_test_add(&reclaims, 1); /* only possible once it is dead */
            }
        }
        tr_test_add(&round_done, 1);
    }
    return NULL;
}

Test(slot, racing_pins_and_kill_elect_exactly_one_reclaimer)
{
    pthread_t t[PINNERS];
    for (int i = 0; i < PINNERS; i++) {
        cr_assert_eq(pthread_create(&t[i], NULL, pinner, NULL), 0);
    }
    uint64_t by_killer = 0;
    for (uint64_t r = 1; r <= ROUNDS; r++) {
        tr_actor_id id;
        cr_assert_eq(tr__slot_alloc(ACTOR(0), WORKER, 0, 0, &id), 0);
        tr__slot *s = tr__slot_get(id);
        uint64_t before = tr_test_load(&reclaims);
        tr_test_store(&cur_id, id.bits);
        tr_test_store(&round_no, r);
        /* Let the pinners get going on this round (if they are quick
         * enough; either way is a valid race), then kill under them. */
        tr_test_wait_ge(&pins_total, tr_test_load(&pins_total) + 20, 5);
        bool mine = tr__slot_kill(s);
        by_killer += mine;
        /* Once every pinner has left the round, nobody can unpin any more. */
        cr_assert(tr_test_wait_ge(&round_done, r * PINNERS, 10000), "round %llu stuck",
                  (unsigned long long)r);
        cr_assert_eq(tr_test_load(&reclaims), before + (mine ? 0 : 1),
                     "round %llu: killer %d, unpin reclaims %llu", (unsigned long long)r, mine,
                     (unsigned long long)(tr_test_load(&reclaims) - before));
        cr_assert_eq(__atomic_load_n(&s->word, __ATOMIC_SEQ_CST) & (TR__SLOT_PIN_MASK | TR__SLOT_ALIVE), 0,
                     "dead with no pins left");
        tr__slot_release(s);
    }
    for (int i = 0; i < PINNERS; i++) {
        pthread_join(t[i], NULL);
    }
    cr_assert_eq(by_killer + tr_test_load(&reclaims), ROUNDS);
}

#define ALLOCATORS 4
#define CYCLES 20000
#define HOLD 8
#define MAX_INDEX (1u << 16)

static uint32_t owner[MAX_INDEX]; /* thread number + 1 holding each index */
static uint64_t conflicts, out_of_range;

static void *allocator(void *arg)
{
    uint32_t me = (uint32_t)(uintptr_t)arg + 1;
    tr_actor_id held[HOLD];
    for (int c = 0; c < CYCLES; c++) {
        int n = 1 + c % HOLD; /* vary how many are held at once */
        for (int i = 0; i < n; i++) {
            if (tr__slot_alloc(ACTOR(me - 1), WORKER, 0, 0, &held[i]) < 0) {
                tr_test_add(&conflicts, 1000000);
                return NULL;
            }
            uint32_t idx = tr__id_index(held[i]);
            if (idx >= MAX_INDEX) {
                tr_test_add(&out_of_range, 1);
                continue;
            }
            uint32_t free_mark = 0;
            if (!__atomic_compare_exchange_n(&owner[idx], &free_mark, me, false, __ATOMIC_SEQ_CST,
                                             __ATOMIC_SEQ_CST)) {
                tr_test_add(&conflicts, 1); /* someone else holds this slot */
            }
        }
        for (int i = 0; i < n; i++) {
            uint32_t idx = tr__id_index(held[i]);
            tr__slot *s = tr__slot_get(held[i]);
            if (s->actor != ACTOR(me - 1) || !tr__slot_is_alive(s, held[i])) {
                tr_test_add(&conflicts, 1);
            }
            if (idx < MAX_INDEX) {
                __atomic_store_n(&owner[idx], 0, __ATOMIC_SEQ_CST);
            }
            if (!tr__slot_kill(s)) {
                tr_test_add(&conflicts, 1);
            }
            tr__slot_release(s);
        }
    }
    return NULL;
}

Test(slot, concurrent_alloc_and_release_never_hand_out_a_slot_twice)
{
    pthread_t t[ALLOCATORS];
    for (uintptr_t i = 0; i < ALLOCATORS; i++) {
        cr_assert_eq(pthread_create(&t[i], NULL, allocator, (void *)i), 0);
    }
    for (int i = 0; i < ALLOCATORS; i++) {
        pthread_join(t[i], NULL);
    }
    cr_assert_eq(tr_test_load(&conflicts), 0);
    cr_assert_eq(tr_test_load(&out_of_range), 0, "slots are reused, the table stays small");
}

/* Regression: the generation was 32 bits, so a slot reused 2^32 times
 * (about 70 minutes at a million spawns a second, with LIFO reuse) handed
 * a stale id back to a new actor. It is 40 bits now. */
Test(slot, a_stale_id_stays_stale_after_2_to_the_32_reuses)
{
    tr_actor_id old;
    cr_assert_eq(tr__slot_alloc(ACTOR(0), WORKER, 0, 0, &old), 0);
    tr__slot *s = tr__slot_get(old);
    cr_assert(tr__slot_kill(s));
    /* Jump to the generation just before 2^32 more releases. */
    uint64_t gen = gen_of(old) + (1ull << 32) - 1;
    __atomic_store_n(&s->word, gen << TR__SLOT_GEN_SHIFT, __ATOMIC_SEQ_CST);
    tr__slot_release(s);
    /* The slot is on top of the free list: the next alloc takes it. */
    tr_actor_id now;
    cr_assert_eq(tr__slot_alloc(ACTOR(1), WORKER, 0, 0, &now), 0);
    cr_assert_eq(index_of(now), index_of(old));
    cr_assert_neq(now.bits, old.bits, "the generation wrapped onto the old id");
    cr_assert_not(tr__slot_is_alive(s, old), "a stale id must not reach the new actor");
    cr_assert_not(tr__slot_pin(s, old));
    cr_assert(tr__slot_kill(s));
    tr__slot_release(s);
}

Test(slot, the_generation_skips_zero_when_it_wraps)
{
    tr_actor_id old;
    cr_assert_eq(tr__slot_alloc(ACTOR(0), WORKER, 0, 0, &old), 0);
    tr__slot *s = tr__slot_get(old);
    cr_assert(tr__slot_kill(s));
    uint64_t max = (1ull << (64 - TR__SLOT_GEN_SHIFT)) - 1;
    __atomic_store_n(&s->word, max << TR__SLOT_GEN_SHIFT, __ATOMIC_SEQ_CST);
    tr__slot_release(s);
    tr_actor_id now;
    cr_assert_eq(tr__slot_alloc(ACTOR(1), WORKER, 0, 0, &now), 0);
    cr_assert_eq(index_of(now), index_of(old));
    cr_assert_eq(gen_of(now), 1, "generation 0 would make id 0 possible");
    cr_assert(tr__slot_kill(s));
    tr__slot_release(s);
}
