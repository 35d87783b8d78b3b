%% Reference: troupe-actors' Savina-style kernels for Erlang/OTP.
%%
%%   erlc -o DIR test/bench/ref/actors.erl
%%   erl -noshell +S 2:2 -pa DIR -run actors main [KERNEL]
%%
%% The same kernels, sizes and message shapes as test/bench/troupe_actors.c
%% (see the comment at its top); each checks its result, prints
%%   RESULT impl=erlang kernel=K workers=W n=N wall_s=.. cpu_s=.. per_s=.. max_rss_kb=..
%% and the VM exits with status 1 on a wrong result. Erlang places processes
%% itself (no placement field): a process starts on its spawner's scheduler
%% and the schedulers migrate and steal work. CPU time and peak RSS come
%% from /proc/self (user + system time of every VM thread; VmHWM), the same
%% counters getrusage reads for troupe and CAF.
-module(actors).
-export([main/0, main/1]).

-define(PINGPONG_N, 1000000).
-define(COUNTING_N, 10000000).
-define(FORKJOIN_ACTORS, 60).
-define(FORKJOIN_N, 100000).
-define(RING_ACTORS, 503).
-define(RING_HOPS, 10000000).
-define(SPAWN_N, 1000000).
-define(SPAWN_WINDOW, 1000).
-define(CHUNK, 1000).
-define(FORKJOIN_ROUNDS, 100).
-define(KERNEL_TIMEOUT_MS, 300000).

main() -> main([]).

main(Args) ->
    Kernels = [pingpong, counting, forkjoin, threadring, spawn],
    Selected = case Args of
                   [] -> Kernels;
                   [Name | _] ->
                       K = list_to_atom(Name),
                       case lists:member(K, Kernels) of
                           true -> [K];
                           false ->
                               io:format(standard_error, "usage: actors [~s]~n",
                                         [string:join([atom_to_list(X) || X <- Kernels], "|")]),
                               halt(2)
                       end
               end,
    Results = [run(K) || K <- Selected],
    case lists:all(fun(R) -> R =:= ok end, Results) of
        true -> halt(0);
        false -> halt(1)
    end.

run(K) ->
    case catch kernel(K) of
        ok -> ok;
        Other ->
            io:format(standard_error, "erlang kernel ~p FAILED: ~p~n", [K, Other]),
            failed
    end.

%% ---- measurement ----

cpu_s() ->
    {ok, Stat} = file:read_file("/proc/self/stat"),
    %% Fields after the ")" that closes the command name: state is field 3,
    %% utime field 14, stime field 15 (in clock ticks of 1/100 s).
    [_, Rest] = binary:split(Stat, <<") ">>, [trim_all]),
    Fields = binary:split(Rest, <<" ">>, [global]),
    Utime = binary_to_integer(lists:nth(12, Fields)),
    Stime = binary_to_integer(lists:nth(13, Fields)),
    (Utime + Stime) / 100.

max_rss_kb() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    {match, [Kb]} = re:run(Status, "VmHWM:\\s+(\\d+) kB", [{capture, all_but_first, list}]),
    list_to_integer(Kb).

start_meter() -> {erlang:monotonic_time(nanosecond), cpu_s()}.

report({W0, C0}, Kernel, N, Unit) ->
    Wall = (erlang:monotonic_time(nanosecond) - W0) / 1.0e9,
    Cpu = cpu_s() - C0,
    PerS = N / Wall,
    Workers = erlang:system_info(schedulers_online),
    io:format("erlang ~s: ~b ~s in ~.3f s wall, ~.3f s cpu (~b/s)~n",
              [Kernel, N, Unit, Wall, Cpu, round(PerS)]),
    io:format("RESULT impl=erlang kernel=~s workers=~b n=~b wall_s=~.4f cpu_s=~.4f per_s=~b max_rss_kb=~b~n",
              [Kernel, Workers, N, Wall, Cpu, round(PerS), max_rss_kb()]),
    ok.

wait_done() ->
    receive
        {done, ok} -> ok;
        {done, Why} -> {error, Why}
    after ?KERNEL_TIMEOUT_MS -> {error, timeout}
    end.

%% ---- kernels ----

kernel(pingpong) ->
    Main = self(),
    Pong = spawn(fun pong/0),
    Ping = spawn(fun() -> receive {start, P} -> P ! {ping, self(), ?PINGPONG_N},
                                                ping(P, ?PINGPONG_N, Main) end end),
    M = start_meter(),
    Ping ! {start, Pong},
    ok = wait_done(),
    report(M, "pingpong", ?PINGPONG_N, "round trips");

kernel(counting) ->
    Main = self(),
    Counter = spawn(fun() -> counter(0) end),
    Producer = spawn(fun() -> producer(Counter, 0, Main) end),
    M = start_meter(),
    Producer ! continue,
    ok = wait_done(),
    report(M, "counting", ?COUNTING_N, "messages");

kernel(forkjoin) ->
    Main = self(),
    Driver = spawn(fun() -> receive {workers, Ws} -> fj_driver(Ws, 0, 0, Main) end end),
    Workers = [spawn(fun() -> fj(0, Driver) end) || _ <- lists:seq(1, ?FORKJOIN_ACTORS)],
    M = start_meter(),
    Driver ! {workers, Workers},
    ok = wait_done(),
    report(M, "forkjoin", ?FORKJOIN_ACTORS * ?FORKJOIN_N, "messages");

kernel(threadring) ->
    Main = self(),
    Ring = [spawn(fun() -> receive {next, Next} -> ring(Next, Main) end end)
            || _ <- lists:seq(1, ?RING_ACTORS)],
    [First | _] = Ring,
    lists:foreach(fun({P, Next}) -> P ! {next, Next} end,
                  lists:zip(Ring, tl(Ring) ++ [First])),
    M = start_meter(),
    First ! {token, ?RING_HOPS},
    ok = wait_done(),
    report(M, "threadring", ?RING_HOPS, "hops");

kernel(spawn) ->
    Main = self(),
    Parent = spawn(fun() -> parent(0, 0, 0, Main) end),
    M = start_meter(),
    Parent ! start,
    ok = wait_done(),
    report(M, "spawn", ?SPAWN_N, "actors").

%% pingpong
pong() ->
    receive
        {ping, From, N} -> From ! {pong, N}, pong()
    end.

ping(Pong, Left, Main) ->
    receive
        {pong, Left} when Left =:= 1 -> Main ! {done, ok};
        {pong, Left} -> Pong ! {ping, self(), Left - 1}, ping(Pong, Left - 1, Main);
        {pong, Other} -> Main ! {done, {bad_pong, Other, Left}}
    end.

%% counting
counter(C) ->
    receive
        inc -> counter(C + 1);
        {get, From} -> From ! {count, C}
    end.

producer(Counter, Sent, Main) when Sent >= ?COUNTING_N ->
    Counter ! {get, self()},
    receive
        {count, ?COUNTING_N} -> Main ! {done, ok};
        {count, C} -> Main ! {done, {bad_count, C}}
    end;
producer(Counter, Sent, Main) ->
    receive
        continue ->
            Next = send_incs(Counter, Sent, min(Sent + ?CHUNK, ?COUNTING_N)),
            Next < ?COUNTING_N andalso (self() ! continue),
            producer(Counter, Next, Main)
    end.

send_incs(_, To, To) -> To;
send_incs(Counter, I, To) -> Counter ! inc, send_incs(Counter, I + 1, To).

%% forkjoin (throughput)
perform_computation(Theta) ->
    S = math:sin(Theta),
    R = S * S,
    R > 0.

fj(Got, Driver) ->
    receive
        work ->
            true = perform_computation(37.2),
            case Got + 1 of
                ?FORKJOIN_N -> Driver ! done;
                G -> fj(G, Driver)
            end
    end.

fj_driver(_Ws, _Rounds, ?FORKJOIN_ACTORS, Main) ->
    Main ! {done, ok};
fj_driver(Ws, Rounds, Done, Main) when Rounds >= ?FORKJOIN_N ->
    receive done -> fj_driver(Ws, Rounds, Done + 1, Main) end;
fj_driver(Ws, Rounds, Done, Main) ->
    Next = fj_rounds(Ws, Rounds, min(Rounds + ?FORKJOIN_ROUNDS, ?FORKJOIN_N)),
    self() ! continue,
    fj_wait(Ws, Next, Done, Main).

fj_wait(Ws, Rounds, Done, Main) ->
    receive
        continue -> fj_driver(Ws, Rounds, Done, Main);
        done -> fj_wait(Ws, Rounds, Done + 1, Main)
    end.

fj_rounds(_, To, To) -> To;
fj_rounds(Ws, R, To) ->
    lists:foreach(fun(W) -> W ! work end, Ws),
    fj_rounds(Ws, R + 1, To).

%% threadring
ring(Next, Main) ->
    receive
        {token, 0} -> Main ! {done, ok}, ring(Next, Main);
        {token, N} -> Next ! {token, N - 1}, ring(Next, Main)
    end.

%% spawn: at most ?SPAWN_WINDOW children alive at once.
child() ->
    receive
        {go, I, Parent} -> Parent ! {ack, I}
    end.

spawn_child(I) ->
    C = spawn(fun child/0),
    C ! {go, I, self()},
    I + 1.

parent(Spawned, Acked, Sum, Main) ->
    receive
        {ack, I} ->
            Next = case Spawned < ?SPAWN_N of
                       true -> spawn_child(Spawned);
                       false -> Spawned
                   end,
            case Acked + 1 of
                ?SPAWN_N ->
                    Want = ?SPAWN_N * (?SPAWN_N - 1) div 2,
                    case Sum + I of
                        Want -> Main ! {done, ok};
                        Got -> Main ! {done, {bad_sum, Got, Want}}
                    end;
                A -> parent(Next, A, Sum + I, Main)
            end;
        start ->
            Next = lists:foldl(fun(_, I) -> spawn_child(I) end, Spawned,
                               lists:seq(1, min(?SPAWN_WINDOW, ?SPAWN_N))),
            parent(Next, Acked, Sum, Main)
    end.
