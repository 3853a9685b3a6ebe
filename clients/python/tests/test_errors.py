"""Errors against a real origin: each is a typed PrewarmError with the server's code and message."""

from __future__ import annotations

import socket
import time
from typing import List

import pytest

import prewarm
from prewarm import Client, Sandbox, WarmProgress
from prewarm.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PrewarmError,
    Timeout,
    Unauthorized,
    Unavailable,
    WarmFailed,
)

from conftest import Origin, Packs, gated, unique

BROKEN = [["/bin/sh", "-c", "echo 'compile error: broken on purpose' >&2; exit 3"]]


def test_unknown_sandbox_is_not_found(origin: Origin, hot_runtime: str) -> None:
    with pytest.raises(NotFound) as e:
        Sandbox.connect("sb-does-not-exist", base_url=origin.url)
    assert isinstance(e.value, PrewarmError)
    assert (e.value.code, e.value.status) == ("not_found", 404)
    assert "sb-does-not-exist" in e.value.message
    # Exec on a sandbox killed meanwhile: over POST (HTTP 404) and over the WebSocket (error message).
    with Client(origin.url) as client:
        sb = Sandbox.create(hot_runtime, client=client)
        client.delete_sandbox(sb.id)  # behind the handle's back: the server says not found
        with pytest.raises(NotFound):
            sb.exec("true")
        with pytest.raises(NotFound) as ws:
            sb.exec("true", on_stdout=print)
        assert ws.value.code == "not_found" and ws.value.status is None


def test_unknown_runtime_is_not_found(origin: Origin) -> None:
    with pytest.raises(NotFound, match="runtime nope-never-pushed:v1 not found"):
        Sandbox.create("nope-never-pushed:v1", base_url=origin.url)


def test_bad_request_is_invalid_request(origin: Origin, hot_runtime: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        Sandbox.create("not a runtime", base_url=origin.url)
    assert e.value.status == 400
    with pytest.raises(InvalidRequest) as e:
        Sandbox.create(hot_runtime, base_url=origin.url, limits={"cpu_secs": 3600})  # the server allows 600
    assert e.value.code == "limit_above_max" and "cpu_secs" in e.value.message


def test_tokens(auth_packs: Packs, monkeypatch: pytest.MonkeyPatch) -> None:
    o = auth_packs.origin
    ref = auth_packs.greeter(unique("auth"))
    monkeypatch.delenv("PREWARM_TOKEN", raising=False)
    with pytest.raises(Unauthorized) as e:
        Sandbox.create(ref, base_url=o.url)
    assert (e.value.code, e.value.status) == ("unauthorized", 401)
    with pytest.raises(Unauthorized, match="not valid"):
        Sandbox.create(ref, base_url=o.url, token="wrong")
    with pytest.raises(Unauthorized):
        Client(o.url, token="wrong").stats()
    # The right token, from the environment like base_url: progress and exec stream over
    # WebSockets, which carry it too (a refused handshake would have fallen back to polling).
    monkeypatch.setenv("PREWARM_URL", o.url)
    monkeypatch.setenv("PREWARM_TOKEN", o.token or "")
    states: List[WarmProgress] = []
    with Sandbox.create(ref, on_progress=states.append) as sb:
        assert states[-1].status == "ready"
        pieces: List[str] = []
        assert sb.exec("echo hi", on_stdout=pieces.append).stdout == "hi\n"
        assert pieces == ["hi\n"]
        # An existing sandbox, a wrong token: refused, not "not found".
        with pytest.raises(Unauthorized):
            Sandbox.connect(sb.id, token="wrong")
        with pytest.raises(Unauthorized):
            Client(token="wrong").exec(sb.id, "true", on_stdout=print)


def test_failing_warm_command_is_warm_failed_with_step_and_reason(packs: Packs) -> None:
    ref = packs.greeter(unique("broken"), warm=BROKEN)
    states: List[WarmProgress] = []
    with Client(packs.origin.url) as client:
        before = client.stats().sandboxes
        with pytest.raises(WarmFailed) as e:
            Sandbox.create(ref, on_progress=states.append, client=client)
        err = e.value
        assert err.code == "warm_failed" and err.step == "warm", repr(err)
        assert "broken on purpose" in err.reason and "status 3" in err.reason, err.reason
        assert err.runtime == ref and err.sandbox_id
        assert "failed in step warm" in str(err)
        assert states[-1].status == "failed" and states[-1].error is not None
        # The SDK deleted the failed sandbox: the caller never got a handle on it.
        assert client.stats().sandboxes == before
        with pytest.raises(NotFound):
            client.sandbox_info(err.sandbox_id)


def test_exec_on_a_failed_sandbox_is_a_conflict(packs: Packs) -> None:
    ref = packs.greeter(unique("broken"), warm=BROKEN)
    with Client(packs.origin.url) as client:
        info = client.create_sandbox_info({"runtime": ref, "user_id": "u"})
        sb = Sandbox(info, client, owns_client=False)
        with pytest.raises(WarmFailed):
            sb.wait_ready()
        with pytest.raises(Conflict) as e:
            sb.exec("true")
        assert (e.value.code, e.value.status) == ("not_ready", 409)
        assert sb.kill()


def test_create_timeout_is_timeout_and_deletes_the_sandbox(packs: Packs) -> None:
    name = unique("gated")
    ref = packs.greeter(name, warm=gated(name))
    with Client(packs.origin.url) as client:
        before = client.stats().sandboxes
        states: List[WarmProgress] = []
        t = time.monotonic()
        with pytest.raises(Timeout) as e:
            Sandbox.create(ref, on_progress=states.append, timeout=1.5, client=client)
        took = time.monotonic() - t
        assert 1.5 <= took < 10, took
        assert e.value.code == "timeout" and "not ready after" in e.value.message
        assert states and states[-1].status == "warming"
        assert client.stats().sandboxes == before
        # Let the warm finish, so no warm command outlives the test.
        packs.origin.open_gate(packs.digest(name))
        deadline = time.monotonic() + 30
        while client.warm(ref).hot is False:
            assert time.monotonic() < deadline, "the gated warm did not finish"
            time.sleep(0.1)


def test_unreachable_origin_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens there now.
    with pytest.raises(Unavailable) as e:
        Sandbox.create("hello:v1", base_url=f"http://127.0.0.1:{port}")
    assert e.value.code == "unreachable" and e.value.retry_after is None


def test_every_error_is_a_prewarm_error() -> None:
    for cls in (NotFound, Unauthorized, WarmFailed, Timeout, Unavailable, InvalidRequest, Conflict):
        assert issubclass(cls, prewarm.errors.PrewarmError)
