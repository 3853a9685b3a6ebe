"""Fixtures: a real ``prewarm serve`` (the binary of this repository) on a free loopback port with
a temporary data directory, and tiny runtime packs pushed to it with ``prewarm push``.

The binary is ``$PREWARM_BIN``, else ``target/debug/prewarm`` of this repository (``scripts/test``
builds it; so does ``cargo build -p prewarm-origin --bins``). Sandboxes need ``bwrap`` and
``prlimit`` (``scripts/sandbox-tools``).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]


def prewarm_bin() -> Path:
    env = os.environ.get("PREWARM_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return target / "debug" / "prewarm"


class Origin:
    """A running ``prewarm serve``; ``stop()`` shuts it down as an operator would (SIGTERM)."""

    def __init__(self, data_dir: Path, extra: Sequence[str] = (), token: Optional[str] = None) -> None:
        binary = prewarm_bin()
        if not binary.exists():
            pytest.fail(
                f"{binary} is missing: build it (`cargo build -p prewarm-origin --bins`) or set PREWARM_BIN",
                pytrace=False,
            )
        missing = [t for t in ("bwrap", "prlimit") if shutil.which(t) is None]
        if missing:
            pytest.fail(f"sandboxes need {' and '.join(missing)}: run scripts/sandbox-tools", pytrace=False)
        self.binary = binary
        self.data_dir = data_dir
        self.token = token
        args = [str(binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *extra]
        if token is not None:
            token_file = data_dir.parent / f"{data_dir.name}.token"
            token_file.write_text(token + "\n")
            args += ["--token-file", str(token_file)]
        env = dict(os.environ, PREWARM_LOG=os.environ.get("PREWARM_LOG", "warn"))
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        url = None
        for line in self.proc.stdout:
            if line.startswith("listening on "):
                url = line[len("listening on ") :].strip()
                break
        if url is None:
            code = self.proc.wait()
            pytest.fail(f"prewarm serve exited ({code}) before listening", pytrace=False)
        self.url: str = url
        # Keep draining stdout so the server never blocks on a full pipe.
        out = self.proc.stdout
        threading.Thread(target=lambda: [None for _ in out], daemon=True).start()
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{self.url} did not become healthy", pytrace=False)
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def runtimes_dir(self) -> Path:
        return self.data_dir / "node-v1" / "runtimes"

    def open_gate(self, digest: str) -> None:
        """Lets a warm command of :func:`gated` finish: creates ``go`` in the runtime's build
        directory (its prefix, writable to warm commands; the one host path both see)."""
        prefix = f".warming-{digest.removeprefix('sha256:')}-"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for d in self.runtimes_dir().glob(prefix + "*"):
                (d / "go").write_bytes(b"")
                return
            time.sleep(0.05)
        raise AssertionError(f"no build directory {prefix}* appeared")

    def push(
        self,
        name: str,
        *,
        warm: Sequence[Sequence[str]] = (),
        files: Sequence[Tuple[str, bytes, int]] = (),
        env: Optional[dict[str, str]] = None,
        interpreters: Optional[dict[str, Any]] = None,
        work: Path,
    ) -> str:
        """Writes a one-layer pack mounted at ``/opt/NAME`` and pushes it as ``NAME:v1``; the digest."""
        pack = work / name
        (pack / "layers").mkdir(parents=True)
        meta = {
            "name": name,
            "version": "1.0.0",
            "layers": ["base"],
            "prefix": f"/opt/{name}",
            "env": {"PATH": f"/opt/{name}/bin:/usr/bin:/bin", **(env or {})},
            "warm": [list(c) for c in warm],
        }
        if interpreters:
            meta["interpreters"] = interpreters
        (pack / "meta.json").write_text(json.dumps(meta))
        lock = {"packages": [{"name": "base", "version": "1", "layer": "base"}]}
        (pack / "lock.json").write_text(json.dumps(lock))
        with tarfile.open(pack / "layers" / "base.tar.gz", "w:gz") as tar:
            for path, data, mode in files:
                info = tarfile.TarInfo(path.rstrip("/"))
                info.mode = mode
                if path.endswith("/"):
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        cmd = [str(self.binary), "push", str(pack), "--name", f"{name}:v1", "--to", self.url, "--json"]
        env_vars = dict(os.environ, PREWARM_LOG="warn")
        if self.token is not None:
            env_vars["PREWARM_TOKEN"] = self.token
        out = subprocess.run(cmd, capture_output=True, text=True, env=env_vars)
        assert out.returncode == 0, f"push {name}: {out.stderr}"
        digest: str = json.loads(out.stdout)["digest"]
        return digest


HELLO = b'#!/bin/sh\necho "hello from $(dirname "$0")"\ncat "$(dirname "$0")/../lib/greeting"\n'
COMPILED = "compiled by the warm step\n"

_names = itertools.count()


def unique(prefix: str) -> str:
    """A runtime name no other test used on this origin: cold until something warms it."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def compile_step(name: str, pause: float = 0.0) -> List[List[str]]:
    """Generates ``lib/greeting`` from ``lib/greeting.in`` (after ``pause`` seconds)."""
    sleep = f"sleep {pause}; " if pause else ""
    return [["/bin/sh", "-c", f"{sleep}sed s/TEMPLATE/compiled/ /opt/{name}/lib/greeting.in > /opt/{name}/lib/greeting"]]


def gated(name: str) -> List[List[str]]:
    """A warm command that runs until the test calls :meth:`Origin.open_gate`."""
    return [["/bin/sh", "-c", f"while [ ! -e /opt/{name}/go ]; do sleep 0.05; done"]]


class Packs:
    """Pushes test runtimes to one origin."""

    def __init__(self, origin: Origin, work: Path) -> None:
        self.origin = origin
        self.work = work

    def greeter(self, name: str, warm: Optional[List[List[str]]] = None) -> str:
        """``NAME:v1``: ``bin/hello`` prints where it runs from, then ``lib/greeting``, which
        only the warm step creates. Returns the runtime reference."""
        files = [
            ("bin/", b"", 0o755),
            ("bin/hello", HELLO, 0o755),
            ("lib/", b"", 0o755),
            ("lib/greeting.in", b"TEMPLATE by the warm step\n", 0o644),
        ]
        self.origin.push(
            name,
            warm=compile_step(name) if warm is None else warm,
            files=files,
            env={"GREETING_LANG": "en"},
            work=self.work,
        )
        return f"{name}:v1"

    def digest(self, name: str) -> str:
        r = httpx.get(
            f"{self.origin.url}/v1/runtimes/{name}/tags/v1",
            headers={"authorization": f"Bearer {self.origin.token}"} if self.origin.token else {},
        )
        d: str = r.json()["digest"]
        return d


@pytest.fixture(scope="session")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    """One origin for the session, no token. Each test warms runtimes of its own (``unique``)."""
    o = Origin(tmp_path_factory.mktemp("origin") / "data")
    try:
        yield o
    finally:
        o.stop()


@pytest.fixture(scope="session")
def auth_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    """An origin started with ``--token-file``: every sandbox route needs the bearer token."""
    o = Origin(tmp_path_factory.mktemp("auth-origin") / "data", token="s3cret-test-token")
    try:
        yield o
    finally:
        o.stop()


@pytest.fixture(scope="session")
def packs(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Packs:
    return Packs(origin, tmp_path_factory.mktemp("packs"))


@pytest.fixture(scope="session")
def auth_packs(auth_origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Packs:
    return Packs(auth_origin, tmp_path_factory.mktemp("auth-packs"))


@pytest.fixture(scope="session")
def hot_runtime(packs: Packs) -> str:
    """A runtime warmed once for the session: creates of it are hot."""
    import prewarm

    ref = packs.greeter(unique("hot"))
    with prewarm.Sandbox.create(ref, base_url=packs.origin.url):
        pass
    return ref

