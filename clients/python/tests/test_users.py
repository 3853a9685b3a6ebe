"""Scoped tokens through the SDK: a sandbox token's sandboxes belong to its user without naming
one, naming another user is refused, and another user's sandbox is NotFound."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator, Optional

import pytest

from prewarm import Client, Sandbox
from prewarm.errors import NotFound, Unauthorized

from conftest import Origin, Packs, unique


def issue(binary: Path, tokens: Path, scope: str, user: Optional[str] = None) -> str:
    args = [str(binary), "token", "issue", "--scope", scope, "--append", str(tokens), "--json"]
    if user is not None:
        args += ["--user", user]
    out = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, PREWARM_LOG="warn"))
    assert out.returncode == 0, out.stderr
    token: str = json.loads(out.stdout)["token"]
    return token


@pytest.fixture
def users(tmp_path: Path) -> Iterator[tuple[Origin, Packs, dict[str, str]]]:
    from conftest import prewarm_bin

    tokens = tmp_path / "tokens.toml"
    keys = {
        "alice": issue(prewarm_bin(), tokens, "sandbox", "alice"),
        "bob": issue(prewarm_bin(), tokens, "sandbox", "bob"),
        "push": issue(prewarm_bin(), tokens, "push"),
    }
    assert all(k not in tokens.read_text() for k in keys.values())
    origin = Origin(tmp_path / "data", extra=["--tokens-file", str(tokens)])
    origin.token = keys["push"]  # what Origin.push sends
    work = tmp_path / "work"
    work.mkdir()
    try:
        yield origin, Packs(origin, work), keys
    finally:
        origin.stop()


def test_the_token_decides_the_user_and_hides_other_users(users: tuple[Origin, Packs, dict[str, str]]) -> None:
    origin, packs, keys = users
    ref = packs.greeter(unique("users"))
    with Sandbox.create(ref, base_url=origin.url, token=keys["alice"]) as sb:
        assert sb.info.user_id == "alice"
        assert sb.exec(["/bin/sh", "-c", "echo mine > f; cat f"]).stdout == "mine\n"
        with Client(origin.url, keys["bob"]) as bob:
            with pytest.raises(NotFound):
                bob.sandbox_info(sb.id)
        with pytest.raises(Unauthorized):
            Sandbox.create(ref, user_id="bob", base_url=origin.url, token=keys["alice"])
        with pytest.raises(Unauthorized):
            Sandbox.create(ref, base_url=origin.url, token=keys["push"])
