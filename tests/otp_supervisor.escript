#!/usr/bin/env escript
%% -*- erlang -*-
%%! +S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none
%%
%% Erlang/OTP's own `supervisor`, driven by tests/test_otp_differential.py.
%%
%% Reads one scenario per line on stdin (an Erlang term, see tests/otp_scenarios.py),
%% runs it on the real supervisor and prints its trace, one event per line, then `end`.
%% It prints `ready` once up. The VM lives for the whole test session; each scenario
%% starts a fresh root.
%%
%% Trace lines (the kernel's runner prints the same):
%%   start ID ok|error|ignore        a start attempt and its result (after the children
%%                                   of a supervisor started, or failed to)
%%   exit ID normal|shutdown|error   a started child (or the root) ended
%%   OP SUP [ID] -> RESULT           a supervisor call, its result as OTP's atom
%%   OP ID noproc                    a step aimed at a process that is not running
%%   which SUP -> ID:STATE:TYPE ...  which_children, in start order
%%   count SUP -> SPECS ACTIVE SUPERVISORS WORKERS
%%   tree SUP -> ...                 which_children of every running supervisor, at the end
%%
%% Ordering: every exit is seen by one tracer process that monitors every started child.
%% It runs at priority high on a single scheduler (+S 1), so it records a death before
%% the supervisor (priority normal) can react to it: the trace is in causal order.
-module(otp_supervisor).
-mode(compile).
-export([main/1, init/1, start_worker/2, start_sup/4]).

main(_) ->
    logger:set_primary_config(level, none),  % supervisor reports would go to stderr
    ets:new(zg_attempts, [named_table, public]),
    Tracer = spawn_opt(fun() -> tracer([], #{}, #{}) end, [link, {priority, high}]),
    register(zg_tracer, Tracer),
    io:put_chars("ready\n"),  % the VM is up, with its helper process (erl_child_setup)
    loop().

%% Each scenario runs in a process of its own, bounded in time: a scenario that hangs
%% ends the VM (after saying so) instead of leaving it behind its closed stdin.
loop() ->
    case io:get_line("") of
        eof ->
            halt(0);
        Line ->
            {ok, Tokens, _} = erl_scan:string(Line),
            {ok, Scenario} = erl_parse:parse_term(Tokens),
            Driver = self(),
            {Runner, Ref} = spawn_monitor(fun() ->
                process_flag(trap_exit, true),
                Driver ! {self(), run(Scenario)}
            end),
            receive
                {'DOWN', Ref, process, Runner, Reason} ->
                    fail(fmt("scenario failed: ~0p", [Reason]));
                {Runner, Trace} ->
                    demonitor(Ref, [flush]),
                    [io:put_chars([Event, $\n]) || Event <- Trace],
                    io:put_chars("end\n"),
                    loop()
            after 20000 ->
                fail("scenario did not end within 20 s")
            end
    end.

fail(Why) ->
    io:put_chars([Why, "\nend\n"]),
    halt(1).

%% -- a scenario ---------------------------------------------------------------------

run({scenario, Flags, Children, Steps}) ->
    ets:delete_all_objects(zg_attempts),
    case supervisor:start_link(?MODULE, {Flags, Children}) of
        {ok, Root} ->
            call({started, root, supervisor, Root}),
            settle(),
            lists:foreach(fun step/1, Steps),
            tree(root),
            case whereis_id(root, supervisor) of
                undefined ->
                    ok;
                Pid ->
                    Ref = monitor(process, Pid),
                    exit(Pid, shutdown),  % from its parent: an orderly shutdown
                    receive {'DOWN', Ref, process, Pid, _} -> ok end
            end;
        {error, _} ->
            log("start root error"),
            lists:foreach(fun step/1, Steps)
    end,
    flush_exits(),
    call(take).

flush_exits() ->
    receive {'EXIT', _, _} -> flush_exits() after 0 -> ok end.

step({Op, Id}) when Op =:= crash; Op =:= finish ->
    case whereis_id(Id, worker) of
        undefined ->
            log(fmt("~s ~s noproc", [Op, Id]));
        Pid ->
            Ref = monitor(process, Pid),
            Pid ! Op,
            receive {'DOWN', Ref, process, Pid, _} -> ok end
    end,
    settle();
step({start_child, Sup, Child}) ->
    on_sup(start_child, Sup, fun(Pid) ->
        Result = supervisor:start_child(Pid, spec(Child)),
        fmt("start_child ~s ~s -> ~s", [Sup, element(2, Child), started(Result)])
    end);
step({restart_child, Sup, Id}) ->
    on_sup(restart_child, Sup, fun(Pid) ->
        fmt("restart_child ~s ~s -> ~s", [Sup, Id, started(supervisor:restart_child(Pid, Id))])
    end);
step({terminate_child, Sup, Id}) ->
    on_sup(terminate_child, Sup, fun(Pid) ->
        fmt("terminate_child ~s ~s -> ~s", [Sup, Id, done(supervisor:terminate_child(Pid, Id))])
    end);
step({delete_child, Sup, Id}) ->
    on_sup(delete_child, Sup, fun(Pid) ->
        fmt("delete_child ~s ~s -> ~s", [Sup, Id, done(supervisor:delete_child(Pid, Id))])
    end);
step({which_children, Sup}) ->
    on_sup(which_children, Sup, fun(Pid) -> fmt("which ~s -> ~s", [Sup, which(Pid)]) end);
step({count_children, Sup}) ->
    on_sup(count_children, Sup, fun(Pid) ->
        Counts = supervisor:count_children(Pid),
        Values = [proplists:get_value(K, Counts) || K <- [specs, active, supervisors, workers]],
        fmt("count ~s -> ~b ~b ~b ~b", [Sup | Values])
    end).

on_sup(Op, Sup, Fun) ->
    case whereis_id(Sup, supervisor) of
        undefined -> log(fmt("~s ~s noproc", [Op, Sup]));
        Pid -> log(Fun(Pid))
    end,
    settle().

%% The results of the supervisor calls, as the atoms the comparison uses.
started({ok, undefined}) -> "ignore";
started({ok, Pid}) when is_pid(Pid) -> "ok";
started({error, {already_started, Pid}}) when is_pid(Pid) -> "already_started";
started({error, {bad_combination, _}}) -> "bad_combination";
started({error, already_present}) -> "already_present";
started({error, running}) -> "running";
started({error, restarting}) -> "restarting";
started({error, not_found}) -> "not_found";
started({error, _}) -> "start_error".

done(ok) -> "ok";
done({error, Reason}) when is_atom(Reason) -> atom_to_list(Reason).

which(Pid) ->
    %% OTP lists children newest first: reversed, in start order.
    Children = lists:reverse(supervisor:which_children(Pid)),
    string:join([fmt("~s:~s:~s", [Id, state(Child), Type]) || {Id, Child, Type, _} <- Children], " ").

state(undefined) -> "undefined";
state(restarting) -> "restarting";
state(Pid) when is_pid(Pid) -> "running".

tree(Sup) ->
    case whereis_id(Sup, supervisor) of
        undefined ->
            ok;
        Pid ->
            log(fmt("tree ~s -> ~s", [Sup, which(Pid)])),
            [tree(Id) || {Id, Child, supervisor, _} <- lists:reverse(supervisor:which_children(Pid)),
                         is_pid(Child)],
            ok
    end.

%% Wait until the tree is quiet: two rounds of calls to every running supervisor with no
%% new event and no child waiting to be restarted (OTP retries a failed restart through
%% a message to itself, try_again_restart, so one round may come too early).
settle() -> settle(-1, 0).

settle(_, 10000) ->
    log("settle did not end");
settle(Before, Rounds) ->
    N = call(count),
    Busy = lists:any(fun busy/1, call(supervisors)),
    case call(count) of
        N when N =:= Before, not Busy -> ok;
        After -> settle(After, Rounds + 1)
    end.

busy(Pid) ->
    try supervisor:which_children(Pid) of
        Children -> lists:keymember(restarting, 2, Children)
    catch
        exit:_ -> true  % it ended meanwhile: look again
    end.

%% -- children -----------------------------------------------------------------------

init({{Strategy, Intensity, Period, AutoShutdown}, Children}) ->
    Flags = #{strategy => Strategy, intensity => Intensity, period => Period,
              auto_shutdown => AutoShutdown},
    {ok, {Flags, [spec(Child) || Child <- Children]}}.

spec({worker, Id, Restart, Significant, Script}) ->
    #{id => Id, start => {?MODULE, start_worker, [Id, Script]}, restart => Restart,
      significant => Significant, shutdown => 5000, type => worker};
spec({supervisor, Id, Restart, Significant, Script, Flags, Children}) ->
    #{id => Id, start => {?MODULE, start_sup, [Id, Script, Flags, Children]},
      restart => Restart, significant => Significant, shutdown => infinity,
      type => supervisor}.

%% The scripted result of the next start of Id, counted over every incarnation.
next_result(Id, Script) ->
    N = ets:update_counter(zg_attempts, Id, 1, {Id, 0}),
    case N =< length(Script) of
        true -> lists:nth(N, Script);
        false -> ok
    end.

start_worker(Id, Script) ->
    case next_result(Id, Script) of
        ok ->
            Pid = spawn_link(fun worker/0),
            call({started, Id, worker, Pid}),
            {ok, Pid};
        error ->
            log(fmt("start ~s error", [Id])),
            {error, scripted};
        ignore ->
            log(fmt("start ~s ignore", [Id])),
            ignore
    end.

worker() ->
    receive
        crash -> exit(crash);
        finish -> exit(normal)
    end.

start_sup(Id, Script, Flags, Children) ->
    case next_result(Id, Script) of
        ok ->
            case supervisor:start_link(?MODULE, {Flags, Children}) of
                {ok, Pid} ->
                    call({started, Id, supervisor, Pid}),
                    {ok, Pid};
                {error, Reason} ->
                    log(fmt("start ~s error", [Id])),
                    {error, Reason}
            end;
        error ->
            log(fmt("start ~s error", [Id])),
            {error, scripted};
        ignore ->
            log(fmt("start ~s ignore", [Id])),
            ignore
    end.

%% -- the tracer ---------------------------------------------------------------------

tracer(Log, ByPid, ById) ->
    receive
        {call, From, Ref, {started, Id, Type, Pid}} ->
            monitor(process, Pid),
            From ! {Ref, ok},
            tracer([fmt("start ~s ok", [Id]) | Log], ByPid#{Pid => {Id, Type}}, ById#{Id => Pid});
        {call, From, Ref, {log, Line}} ->
            From ! {Ref, ok},
            tracer([Line | Log], ByPid, ById);
        {call, From, Ref, {whereis, Id, Type}} ->
            Found = maps:get(Id, ById, undefined),
            From ! {Ref, case ByPid of #{Found := {_, Type}} -> Found; _ -> undefined end},
            tracer(Log, ByPid, ById);
        {call, From, Ref, supervisors} ->
            From ! {Ref, [Pid || {Pid, {_, supervisor}} <- maps:to_list(ByPid)]},
            tracer(Log, ByPid, ById);
        {call, From, Ref, count} ->
            From ! {Ref, length(Log)},
            tracer(Log, ByPid, ById);
        {call, From, Ref, take} ->
            From ! {Ref, lists:reverse(Log)},
            tracer([], ByPid, ById);
        {'DOWN', _, process, Pid, Reason} ->
            {{Id, _}, ByPid2} = maps:take(Pid, ByPid),
            ById2 = case ById of #{Id := Pid} -> maps:remove(Id, ById); _ -> ById end,
            tracer([fmt("exit ~s ~s", [Id, reason(Reason)]) | Log], ByPid2, ById2)
    end.

reason(normal) -> "normal";
reason(shutdown) -> "shutdown";
reason({shutdown, _}) -> "shutdown";
reason(_) -> "error".

call(Request) ->
    Ref = make_ref(),
    zg_tracer ! {call, self(), Ref, Request},
    receive {Ref, Reply} -> Reply end.

log(Line) -> call({log, Line}).

%% The running process of Id, if it is of Type (worker or supervisor).
whereis_id(Id, Type) -> call({whereis, Id, Type}).

fmt(Format, Args) -> lists:flatten(io_lib:format(Format, Args)).
