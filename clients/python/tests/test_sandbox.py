"""The sync API against a real origin: create (cold with progress, hot, polling fallback),
exec (streaming, plain, non-zero exit, timeout), context manager, env and context."""

from __future__ import annotations

import time
from typing import List, Tuple

import pytest

import prewarm
from prewarm import Client, Sandbox, WarmProgress

from conftest import COMPILED, Origin, Packs, compile_step, unique
from proxy import NoUpgradeProxy


class CountingClient(Client):
    """Counts status polls (``GET /v1/sandboxes/{id}``): one when progress came over the
    WebSocket (the final check), several when the SDK polled."""

    polls = 0

    def sandbox_info(self, sandbox_id: str) -> prewarm.SandboxInfo:
        self.polls += 1
        return super().sandbox_info(sandbox_id)


def assert_progress_well_formed(states: List[WarmProgress]) -> None:
    assert states, "on_progress was never called"
    assert states[0].status == "warming", states
    assert states[-1].status == "ready" and states[-1].progress == 1.0 and states[-1].step == "done", states
    assert all(s.status == "warming" for s in states[:-1]), states
    progress = [s.progress for s in states]
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    assert len(set(states)) == len(states), f"a state was reported twice: {states}"


def test_cold_create_reports_progress_over_the_websocket(packs: Packs) -> None:
    name = unique("cold")
    ref = packs.greeter(name, warm=compile_step(name, pause=1.0))
    states: List[WarmProgress] = []
    with CountingClient(packs.origin.url) as client:
        with Sandbox.create(ref, user_id="u1", on_progress=states.append, client=client) as sb:
            assert not sb.hot
            assert sb.info.status == "ready"
            assert sb.id.startswith("sb-")
            assert_progress_well_formed(states)
            # The warm command runs for a second: the stream showed that step as it happened.
            assert "warm" in [s.step for s in states], states
            assert any(s.estimated_ms is not None for s in states[:-1]), states
            # Progress came from the events stream; one GET confirmed the end.
            assert client.polls == 1
            out = sb.exec(["hello"])
            assert out.exit_code == 0 and out.stdout.endswith(COMPILED), out


def test_hot_create_is_ready_at_once(hot_runtime: str, origin: Origin) -> None:
    states: List[WarmProgress] = []
    with CountingClient(origin.url) as client:
        t = time.monotonic()
        with Sandbox.create(hot_runtime, on_progress=states.append, client=client) as sb:
            took = time.monotonic() - t
            assert sb.hot
            assert states == [WarmProgress(status="ready", progress=1.0, step="done")]
            assert client.polls == 0, "a hot create needs no waiting"
            assert took < 5, took
            assert sb.exec("hello").stdout.endswith(COMPILED)


def test_progress_falls_back_to_polling_when_the_websocket_is_refused(packs: Packs) -> None:
    name = unique("fallback")
    ref = packs.greeter(name, warm=compile_step(name, pause=1.0))
    proxy = NoUpgradeProxy(packs.origin.url)
    try:
        states: List[WarmProgress] = []
        with CountingClient(proxy.url) as client:
            with Sandbox.create(ref, on_progress=states.append, client=client) as sb:
                assert proxy.upgrades_refused == 1
                assert_progress_well_formed(states)
                # Polled (0.1 s, growing to 1 s) through a one-second warm command.
                assert client.polls >= 3, client.polls
                assert proxy.gets_of(f"/v1/sandboxes/{sb.id}") == client.polls
                # Exec with callbacks falls back to POST: the output arrives whole.
                pieces: List[str] = []
                out = sb.exec(["hello"], on_stdout=pieces.append)
                assert proxy.upgrades_refused == 2
                assert out.stdout.endswith(COMPILED)
                assert pieces == [out.stdout]
    finally:
        proxy.close()


def test_exec_streams_output_before_the_result(hot_runtime: str, origin: Origin) -> None:
    with Sandbox.create(hot_runtime, base_url=origin.url) as sb:
        got: List[Tuple[str, str, float]] = []
        t = time.monotonic()
        out = sb.exec(
            "echo first; sleep 1.5; echo oops >&2; sleep 0.5; echo last",
            on_stdout=lambda s: got.append(("out", s, time.monotonic() - t)),
            on_stderr=lambda s: got.append(("err", s, time.monotonic() - t)),
        )
        done = time.monotonic() - t
        assert out.exit_code == 0 and out.ok
        assert out.stdout == "first\nlast\n" and out.stderr == "oops\n", out
        assert "".join(s for k, s, _ in got if k == "out") == out.stdout
        assert "".join(s for k, s, _ in got if k == "err") == out.stderr
        assert [k for k, _, _ in got][:2] == ["out", "err"], got
        # The first line arrived while the command still had two seconds to run.
        first_at = got[0][2]
        assert first_at < done - 1.0, (got, done)


def test_streamed_output_keeps_multibyte_characters_whole(hot_runtime: str, origin: Origin) -> None:
    text = "héllo wörld ✓ 日本語 🚀\n" * 2000
    with Sandbox.create(hot_runtime, base_url=origin.url) as sb:
        pieces: List[str] = []
        out = sb.exec(["/bin/sh", "-c", 'printf "%s" "$T"'], env={"T": text}, on_stdout=pieces.append)
        assert out.stdout == text
        assert "".join(pieces) == text
        assert all("\ufffd" not in p for p in pieces)


def test_non_zero_exit_is_a_result_not_an_exception(hot_runtime: str, origin: Origin) -> None:
    with Sandbox.create(hot_runtime, base_url=origin.url) as sb:
        plain = sb.exec("echo partial; echo 'it broke' >&2; exit 3")
        assert (plain.exit_code, plain.ok) == (3, False)
        assert plain.stdout == "partial\n" and plain.stderr == "it broke\n"
        streamed_err: List[str] = []
        streamed = sb.exec("echo 'it broke' >&2; exit 7", on_stderr=streamed_err.append)
        assert streamed.exit_code == 7 and "".join(streamed_err) == "it broke\n"
        missing = sb.exec(["no-such-program"])
        assert missing.exit_code not in (0, None) and missing.stderr, missing


def test_exec_timeout_kills_the_command_and_says_so(hot_runtime: str, origin: Origin) -> None:
    with Sandbox.create(hot_runtime, base_url=origin.url) as sb:
        t = time.monotonic()
        out = sb.exec("echo started; sleep 30", timeout=1)
        assert time.monotonic() - t < 15
        assert out.timed_out and out.exit_code is None, out
        assert out.stdout == "started\n"


def test_env_and_context_reach_the_sandbox(hot_runtime: str, origin: Origin) -> None:
    ctx = {"task": "demo", "n": 3}
    with Sandbox.create(hot_runtime, base_url=origin.url, env={"FROM_CREATE": "a"}, context=ctx) as sb:
        out = sb.exec(
            'echo "$FROM_CREATE $FROM_EXEC $GREETING_LANG"; cat .prewarm/context.json',
            env={"FROM_EXEC": "b"},
        )
        assert out.ok, out
        first, rest = out.stdout.split("\n", 1)
        assert first == "a b en"
        import json

        assert json.loads(rest) == ctx


def test_context_manager_kills_the_sandbox_even_on_error(hot_runtime: str, origin: Origin) -> None:
    with Client(origin.url) as client:
        with Sandbox.create(hot_runtime, client=client) as sb:
            first = sb.id
        with pytest.raises(prewarm.NotFound):
            client.sandbox_info(first)
        with pytest.raises(RuntimeError, match="boom"):
            with Sandbox.create(hot_runtime, client=client) as sb:
                second = sb.id
                raise RuntimeError("boom")
        with pytest.raises(prewarm.NotFound):
            client.sandbox_info(second)
        # kill says whether there was something to kill.
        sb = Sandbox.create(hot_runtime, client=client)
        assert sb.kill() is True
        assert sb.kill() is False
        with pytest.raises(prewarm.NotFound, match="killed by this handle"):
            sb.exec("true")
        # A handle that opened its own connections closes them on kill.
        own = Sandbox.create(hot_runtime, base_url=origin.url)
        assert own.kill() is True and own.client._http.is_closed


def test_a_failing_progress_callback_propagates_and_deletes_the_sandbox(packs: Packs) -> None:
    name = unique("cbfail")
    ref = packs.greeter(name, warm=compile_step(name, pause=0.5))
    seen: List[str] = []

    def on_progress(p: WarmProgress) -> None:
        # The first state is the create's answer (its step depends on how far the warm got);
        # the second comes while waiting: that one raises.
        seen.append(p.step)
        if len(seen) >= 2:
            raise KeyError("the callback's own bug")

    with Client(packs.origin.url) as client:
        before = client.stats().sandboxes
        with pytest.raises(KeyError, match="own bug"):
            Sandbox.create(ref, on_progress=on_progress, client=client)
        assert client.stats().sandboxes == before
        assert len(seen) == 2, seen


def test_connect_and_wait_ready(packs: Packs) -> None:
    name = unique("connect")
    ref = packs.greeter(name, warm=compile_step(name, pause=0.5))
    with Client(packs.origin.url) as client:
        info = client.create_sandbox_info({"runtime": ref, "user_id": "u"})
        assert info.status == "warming"
        with Sandbox.connect(info.sandbox_id, client=client) as sb:
            states: List[WarmProgress] = []
            ready = sb.wait_ready(on_progress=states.append)
            assert ready.status == "ready" and states[-1].status == "ready"
            assert sb.exec("hello").ok


def test_a_quiet_command_streams_past_the_websocket_keepalive(hot_runtime: str, origin: Origin) -> None:
    """42 s of silence: the origin answers no ping on an exec socket, so a client keepalive
    (20 s interval + 20 s timeout) would cut the stream before the result."""
    with Sandbox.create(hot_runtime, base_url=origin.url) as sb:
        pieces: List[str] = []
        out = sb.exec("echo before; sleep 42; echo after", on_stdout=pieces.append, timeout=120)
        assert out.ok and out.stdout == "before\nafter\n", out
        assert "".join(pieces) == out.stdout
