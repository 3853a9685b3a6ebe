"""``Sandbox.run_code`` against a real origin: state across calls, results, errors, streaming,
timeouts (the interpreter is the host's ``/usr/bin/python3``, which every sandbox sees)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

import prewarm
from prewarm import AsyncSandbox, Sandbox

from conftest import Origin, unique


@pytest.fixture(scope="module")
def python_runtime(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> str:
    if not Path("/usr/bin/python3").exists():
        pytest.fail("these tests run the host's /usr/bin/python3 in the sandbox", pytrace=False)
    name = unique("py")
    origin.push(
        name,
        files=[("lib/", b"", 0o755)],
        interpreters={"python": {"cmd": ["/usr/bin/python3"], "preload": ["json"]}},
        work=tmp_path_factory.mktemp("py-pack"),
    )
    return f"{name}:v1"


def test_run_code_keeps_state_and_reports_errors_as_results(python_runtime: str, origin: Origin) -> None:
    with Sandbox.create(python_runtime, base_url=origin.url) as sb:
        first = sb.run_code("x = 6")
        assert first.ok and first.result is None, first
        r = sb.run_code("print('hi')\nx * 7")
        assert (r.stdout, r.result, r.fresh_interpreter) == ("hi\n", "42", False), r
        bad = sb.run_code("x / 0")
        assert not bad.ok and bad.error is not None, bad
        assert (bad.error.name, bad.error.value) == ("ZeroDivisionError", "division by zero")
        assert "x / 0" in bad.error.traceback
        pieces: List[str] = []
        streamed = sb.run_code("print('a', flush=True)\nprint('b')\n'end'", on_stdout=pieces.append)
        assert "".join(pieces) == "a\nb\n" and streamed.result == "'end'", (pieces, streamed)
        slow = sb.run_code("while True: pass", timeout=0.5)
        assert slow.timed_out and not slow.ok, slow
        again = sb.run_code("'x' in globals()")
        assert again.fresh_interpreter and again.result == "False", again
        with pytest.raises(prewarm.InvalidRequest):
            sb.run_code("1", language="ruby")


async def test_async_run_code(python_runtime: str, origin: Origin) -> None:
    async with await AsyncSandbox.create(python_runtime, base_url=origin.url) as sb:
        await sb.run_code("import json; d = {'a': 1}")
        r = await sb.run_code("json.dumps(d)")
        assert r.result == "'{\"a\": 1}'", r
