// Reference: troupe-actors' Savina-style kernels for CAF 0.17 (Debian's
// libcaf-dev), built by test/bench/CMakeLists.txt when CAF is found.
//
//   caf-actors [KERNEL] [--workers N]
//
// The same kernels, sizes and message shapes as test/bench/troupe_actors.c
// (see the comment at its top), on event-based actors with CAF's default
// work-stealing scheduler limited to N threads (default 2). Each kernel gets
// a fresh actor_system, checks its result, and prints
//   RESULT impl=caf kernel=K workers=W n=N wall_s=.. cpu_s=.. per_s=.. max_rss_kb=..
// The exit status is 1 on a wrong result. CAF places actors itself (no
// placement field): an actor made ready by a worker goes on that worker's
// queue and idle workers steal.
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "caf/all.hpp"

using namespace caf;

namespace {

constexpr uint64_t pingpong_n = 1000000;
constexpr uint64_t counting_n = 10000000;
constexpr uint64_t forkjoin_actors = 60;
constexpr uint64_t forkjoin_n = 100000;
constexpr uint64_t ring_actors = 503;
constexpr uint64_t ring_hops = 10000000;
constexpr uint64_t spawn_n = 1000000;
constexpr uint64_t spawn_window = 1000;
constexpr uint64_t chunk = 1000;
constexpr uint64_t forkjoin_rounds = 100;
constexpr int kernel_timeout_s = 300;

using start_atom = atom_constant<atom("start")>;
using continue_atom = atom_constant<atom("continue")>;
using ping_atom = atom_constant<atom("ping")>;
using pong_atom = atom_constant<atom("pong")>;
using inc_atom = atom_constant<atom("inc")>;
using get_atom_t = atom_constant<atom("getcount")>;
using count_atom = atom_constant<atom("count")>;
using work_atom = atom_constant<atom("work")>;
using done_atom = atom_constant<atom("done")>;
using next_atom = atom_constant<atom("next")>;
using token_atom = atom_constant<atom("token")>;
using go_atom = atom_constant<atom("go")>;
using ack_atom = atom_constant<atom("ack")>;

unsigned n_workers = 2;

// ---- measurement ----

double now_wall() {
  auto t = std::chrono::steady_clock::now().time_since_epoch();
  return std::chrono::duration<double>(t).count();
}

double now_cpu() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

long max_rss_kb() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

struct meter {
  double wall0 = now_wall();
  double cpu0 = now_cpu();
};

void report(const meter& m, const char* kernel, uint64_t n, const char* unit) {
  double wall = now_wall() - m.wall0;
  double cpu = now_cpu() - m.cpu0;
  double per_s = n / wall;
  printf("caf %s: %llu %s in %.3f s wall, %.3f s cpu (%.0f/s)\n", kernel,
         (unsigned long long)n, unit, wall, cpu, per_s);
  printf("RESULT impl=caf kernel=%s workers=%u n=%llu wall_s=%.4f cpu_s=%.4f "
         "per_s=%.0f max_rss_kb=%ld\n",
         kernel, n_workers, (unsigned long long)n, wall, cpu, per_s, max_rss_kb());
  fflush(stdout);
}

struct bench_config : actor_system_config {
  bench_config() {
    set("scheduler.max-threads", static_cast<size_t>(n_workers));
    set("logger.console", atom("none"));
  }
};

// Waits for the kernel's done(ok) message on the blocking main actor.
bool wait_done(scoped_actor& self) {
  bool ok = false;
  bool got = false;
  self->receive([&](done_atom, bool result) { ok = result; got = true; },
                after(std::chrono::seconds(kernel_timeout_s)) >> [&] {
                  fprintf(stderr, "kernel timed out after %d s\n", kernel_timeout_s);
                });
  return got && ok;
}

actor sender_of(event_based_actor* self) {
  return actor_cast<actor>(self->current_sender());
}

// ---- pingpong ----

behavior pong(event_based_actor* self) {
  return {[=](ping_atom, uint64_t n) { self->send(sender_of(self), pong_atom::value, n); }};
}

struct ping_state {
  uint64_t left = pingpong_n;
};

behavior ping(stateful_actor<ping_state>* self, actor main) {
  return {
    [=](start_atom, const actor& p) { self->send(p, ping_atom::value, self->state.left); },
    [=](pong_atom, uint64_t n) {
      if (n != self->state.left) {
        fprintf(stderr, "pingpong: pong %llu, expected %llu\n", (unsigned long long)n,
                (unsigned long long)self->state.left);
        self->send(main, done_atom::value, false);
        return;
      }
      if (--self->state.left == 0) {
        self->send(main, done_atom::value, true);
        return;
      }
      self->send(sender_of(self), ping_atom::value, self->state.left);
    },
  };
}

bool run_pingpong() {
  bench_config cfg;
  actor_system sys{cfg};
  scoped_actor main{sys};
  auto po = sys.spawn(pong);
  auto pi = sys.spawn(ping, actor{main});
  meter m;
  main->send(pi, start_atom::value, po);
  bool ok = wait_done(main);
  if (ok) {
    report(m, "pingpong", pingpong_n, "round trips");
  }
  main->send_exit(po, exit_reason::kill);
  main->send_exit(pi, exit_reason::kill);
  return ok;
}

// ---- counting ----

struct counter_state {
  uint64_t count = 0;
};

behavior counter(stateful_actor<counter_state>* self) {
  return {
    [=](inc_atom) { self->state.count++; },
    [=](get_atom_t) { self->send(sender_of(self), count_atom::value, self->state.count); },
  };
}

struct producer_state {
  uint64_t sent = 0;
};

behavior producer(stateful_actor<producer_state>* self, actor ctr, actor main) {
  return {
    [=](continue_atom) {
      auto& sent = self->state.sent;
      for (uint64_t i = 0; i < chunk && sent < counting_n; i++, sent++) {
        self->send(ctr, inc_atom::value);
      }
      if (sent < counting_n) {
        self->send(self, continue_atom::value);
      } else {
        self->send(ctr, get_atom_t::value);
      }
    },
    [=](count_atom, uint64_t n) {
      if (n != counting_n) {
        fprintf(stderr, "counting: counter has %llu\n", (unsigned long long)n);
      }
      self->send(main, done_atom::value, n == counting_n);
    },
  };
}

bool run_counting() {
  bench_config cfg;
  actor_system sys{cfg};
  scoped_actor main{sys};
  auto ctr = sys.spawn(counter);
  auto prod = sys.spawn(producer, ctr, actor{main});
  meter m;
  main->send(prod, continue_atom::value);
  bool ok = wait_done(main);
  if (ok) {
    report(m, "counting", counting_n, "messages");
  }
  main->send_exit(ctr, exit_reason::kill);
  main->send_exit(prod, exit_reason::kill);
  return ok;
}

// ---- forkjoin (throughput) ----

struct fj_state {
  uint64_t got = 0;
  double sink = 0;
};

// Savina's performComputation(37.2).
bool perform_computation(double theta, double& sink) {
  double s = std::sin(theta);
  double r = s * s;
  sink += r;
  return r > 0;
}

behavior fj(stateful_actor<fj_state>* self, actor driver) {
  return {[=](work_atom) {
    if (!perform_computation(37.2, self->state.sink)) {
      self->send(driver, done_atom::value, false);
      return;
    }
    if (++self->state.got == forkjoin_n) {
      self->send(driver, done_atom::value, true);
      self->quit();
    }
  }};
}

struct fj_driver_state {
  std::vector<actor> workers;
  uint64_t rounds = 0;
  uint64_t done = 0;
  bool ok = true;
};

behavior fj_driver(stateful_actor<fj_driver_state>* self, actor main) {
  return {
    [=](start_atom) {
      for (uint64_t i = 0; i < forkjoin_actors; i++) {
        self->state.workers.push_back(self->spawn(fj, actor_cast<actor>(self)));
      }
      self->send(self, continue_atom::value);
    },
    [=](continue_atom) {
      auto& st = self->state;
      for (uint64_t r = 0; r < forkjoin_rounds && st.rounds < forkjoin_n; r++, st.rounds++) {
        for (auto& w : st.workers) {
          self->send(w, work_atom::value);
        }
      }
      if (st.rounds < forkjoin_n) {
        self->send(self, continue_atom::value);
      }
    },
    [=](done_atom, bool ok) {
      self->state.ok = self->state.ok && ok;
      if (++self->state.done == forkjoin_actors) {
        self->send(main, done_atom::value, self->state.ok);
      }
    },
  };
}

bool run_forkjoin() {
  bench_config cfg;
  actor_system sys{cfg};
  scoped_actor main{sys};
  auto driver = sys.spawn(fj_driver, actor{main});
  meter m;
  main->send(driver, start_atom::value);
  bool ok = wait_done(main);
  if (ok) {
    report(m, "forkjoin", forkjoin_actors * forkjoin_n, "messages");
  }
  main->send_exit(driver, exit_reason::kill);
  return ok;
}

// ---- threadring ----

struct ring_state {
  actor next;
};

behavior ring_node(stateful_actor<ring_state>* self, actor main) {
  return {
    [=](next_atom, const actor& next) { self->state.next = next; },
    [=](token_atom, uint64_t left) {
      if (left == 0) {
        self->send(main, done_atom::value, true);
        return;
      }
      self->send(self->state.next, token_atom::value, left - 1);
    },
  };
}

bool run_threadring() {
  bench_config cfg;
  actor_system sys{cfg};
  scoped_actor main{sys};
  std::vector<actor> ring;
  for (uint64_t i = 0; i < ring_actors; i++) {
    ring.push_back(sys.spawn(ring_node, actor{main}));
  }
  for (uint64_t i = 0; i < ring_actors; i++) {
    main->send(ring[i], next_atom::value, ring[(i + 1) % ring_actors]);
  }
  meter m;
  main->send(ring[0], token_atom::value, ring_hops);
  bool ok = wait_done(main);
  if (ok) {
    report(m, "threadring", ring_hops, "hops");
  }
  // The ring holds references to itself: clear them, then stop every node.
  for (auto& a : ring) {
    main->send_exit(a, exit_reason::kill);
  }
  return ok;
}

// ---- spawn ----

behavior child(event_based_actor* self) {
  return {[=](go_atom, uint64_t i) {
    self->send(sender_of(self), ack_atom::value, i);
    self->quit();
  }};
}

struct parent_state {
  uint64_t spawned = 0, acked = 0, sum = 0;
};

// Spawns the next child and sends it its index.
void spawn_child(stateful_actor<parent_state>* self) {
  auto c = self->spawn(child);
  self->send(c, go_atom::value, self->state.spawned++);
}

behavior parent(stateful_actor<parent_state>* self, actor main) {
  return {
    [=](start_atom) {
      for (uint64_t i = 0; i < spawn_window && i < spawn_n; i++) {
        spawn_child(self);
      }
    },
    [=](ack_atom, uint64_t i) {
      auto& st = self->state;
      st.sum += i;
      if (st.spawned < spawn_n) {
        spawn_child(self);
      }
      if (++st.acked == spawn_n) {
        uint64_t want = spawn_n * (spawn_n - 1) / 2;
        if (st.sum != want) {
          fprintf(stderr, "spawn: ack sum %llu, expected %llu\n", (unsigned long long)st.sum,
                  (unsigned long long)want);
        }
        self->send(main, done_atom::value, st.sum == want);
      }
    },
  };
}

bool run_spawn() {
  bench_config cfg;
  actor_system sys{cfg};
  scoped_actor main{sys};
  auto p = sys.spawn(parent, actor{main});
  meter m;
  main->send(p, start_atom::value);
  bool ok = wait_done(main);
  if (ok) {
    report(m, "spawn", spawn_n, "actors");
  }
  main->send_exit(p, exit_reason::kill);
  return ok;
}

struct kernel {
  const char* name;
  bool (*run)();
};

const kernel kernels[] = {
  {"pingpong", run_pingpong},     {"counting", run_counting}, {"forkjoin", run_forkjoin},
  {"threadring", run_threadring}, {"spawn", run_spawn},
};

[[noreturn]] void usage() {
  fprintf(stderr, "usage: caf-actors [pingpong|counting|forkjoin|threadring|spawn] "
                  "[--workers N]\n");
  exit(2);
}

} // namespace

int main(int argc, char** argv) {
  const char* only = nullptr;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
      char* end;
      long n = strtol(argv[++i], &end, 10);
      if (*end != '\0' || n < 1 || n > 1024) {
        usage();
      }
      n_workers = static_cast<unsigned>(n);
    } else if (argv[i][0] != '-' && only == nullptr) {
      only = argv[i];
    } else {
      usage();
    }
  }
  int failed = 0, ran = 0;
  for (auto& k : kernels) {
    if (only != nullptr && strcmp(only, k.name) != 0) {
      continue;
    }
    ran++;
    if (!k.run()) {
      fprintf(stderr, "caf-actors: kernel %s FAILED\n", k.name);
      failed = 1;
    }
  }
  if (ran == 0) {
    usage();
  }
  return failed;
}
