"""Client: warm, stats, runtimes; and how answers that are not the API's own map to errors."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from prewarm import Client, WarmInfo
from prewarm import _core
from prewarm.errors import (
    InvalidRequest,
    NotFound,
    PrewarmError,
    ServerError,
    Timeout,
    Unauthorized,
    Unavailable,
)

from conftest import Packs, unique


def test_warm_stats_and_resolve(packs: Packs) -> None:
    name = unique("warm")
    ref = packs.greeter(name)
    with Client(packs.origin.url) as client:
        assert client.healthy()
        assert client.resolve(ref) == packs.digest(name)
        before = client.stats()
        first = client.warm(ref, priority="high")
        assert isinstance(first, WarmInfo)
        assert (first.runtime, first.digest, first.hot) == (ref, packs.digest(name), False)
        assert first.state.status == "warming"
        deadline = time.monotonic() + 60
        while client.stats().warms_succeeded == before.warms_succeeded:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        again = client.warm(ref)
        assert again.hot and again.state.status == "ready"
        after = client.stats()
        assert after.warms_started == before.warms_started + 1
        assert after.warm_runtimes == before.warm_runtimes + 1
        with pytest.raises(NotFound):
            client.resolve(f"{name}:v2")
        with pytest.raises(NotFound):
            client.warm("never-pushed:v1")
        with pytest.raises(InvalidRequest):
            client.resolve("no-tag")


def test_base_url_and_token_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREWARM_URL", "http://example.invalid:1234/")
    monkeypatch.setenv("PREWARM_TOKEN", "t0k")
    c = Client()
    assert (c.base_url, c.token) == ("http://example.invalid:1234", "t0k")
    assert Client("http://other:1", token="").token is None
    monkeypatch.delenv("PREWARM_URL")
    monkeypatch.delenv("PREWARM_TOKEN")
    assert (Client().base_url, Client().token) == ("http://127.0.0.1:7070", None)


# -- answers a real origin does not give here (a proxy's, a tier down): the mapping alone ------


def test_status_decides_the_class() -> None:
    body = b'{"error":{"code":"unavailable","message":"a storage tier is unavailable; retry later"}}'
    e = _core.error_from_response(503, {"Retry-After": "7"}, body, "GET /x")
    assert isinstance(e, Unavailable) and e.retry_after == 7.0
    assert (e.code, e.message, e.status) == ("unavailable", "a storage tier is unavailable; retry later", 503)
    soon = formatdate(time.time() + 60, usegmt=True)
    e = _core.error_from_response(503, {"retry-after": soon}, b"", "GET /x")
    assert isinstance(e, Unavailable) and e.retry_after is not None and 50 < e.retry_after <= 60
    e = _core.error_from_response(403, {}, b"<html>Forbidden</html>", "POST /v1/sandboxes")
    assert isinstance(e, Unauthorized) and e.code == "forbidden" and "Forbidden" in e.message
    e = _core.error_from_response(502, {}, b"Bad Gateway", "GET /x")
    assert isinstance(e, Unavailable) and e.status == 502
    assert isinstance(_core.error_from_response(504, {}, b"", "POST /exec"), Timeout)
    e = _core.error_from_response(500, {}, b'{"error":{"code":"internal","message":"internal error"}}', "x")
    assert isinstance(e, ServerError) and e.code == "internal"
    e = _core.error_from_response(418, {}, b"", "GET /tea")
    assert isinstance(e, InvalidRequest) and e.code == "http_418"


def test_websocket_errors_map_by_code() -> None:
    def ws(code: str) -> PrewarmError:
        return _core.ws_error({"error": {"code": code, "message": "m"}})

    assert isinstance(ws("not_found"), NotFound)
    assert isinstance(ws("unauthorized"), Unauthorized)
    assert isinstance(ws("bad_json"), InvalidRequest)
    assert isinstance(ws("limit_above_max"), InvalidRequest)
    assert isinstance(ws("unavailable"), Unavailable)
    assert type(ws("something_new")) is PrewarmError
    assert isinstance(_core.ws_error({"what": 1}), ServerError)
