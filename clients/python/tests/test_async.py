"""The async API against the same real origin: AsyncSandbox and AsyncClient."""

from __future__ import annotations

import asyncio
import time
from typing import List, Tuple

import pytest

from prewarm import AsyncClient, AsyncSandbox, WarmProgress
from prewarm.errors import NotFound, Timeout, Unauthorized, WarmFailed

from conftest import COMPILED, Origin, Packs, compile_step, gated, unique
from proxy import NoUpgradeProxy


async def test_async_cold_create_with_async_progress_callback(packs: Packs) -> None:
    name = unique("acold")
    ref = packs.greeter(name, warm=compile_step(name, pause=1.0))
    states: List[WarmProgress] = []

    async def on_progress(p: WarmProgress) -> None:
        await asyncio.sleep(0)
        states.append(p)

    async with await AsyncSandbox.create(ref, base_url=packs.origin.url, on_progress=on_progress) as sb:
        assert not sb.hot
        assert states[0].status == "warming" and states[-1].status == "ready"
        assert "warm" in [s.step for s in states]
        out = await sb.exec("hello")
        assert out.ok and out.stdout.endswith(COMPILED)


async def test_async_polling_fallback(packs: Packs) -> None:
    name = unique("afallback")
    ref = packs.greeter(name, warm=compile_step(name, pause=0.5))
    proxy = NoUpgradeProxy(packs.origin.url)
    try:
        states: List[WarmProgress] = []
        async with await AsyncSandbox.create(ref, base_url=proxy.url, on_progress=states.append) as sb:
            assert proxy.upgrades_refused == 1
            assert proxy.gets_of(f"/v1/sandboxes/{sb.id}") >= 2
            assert states[-1].status == "ready"
            pieces: List[str] = []
            out = await sb.exec("hello", on_stdout=pieces.append)
            assert pieces == [out.stdout] and out.stdout.endswith(COMPILED)
    finally:
        proxy.close()


async def test_async_exec_streams_and_sandboxes_run_concurrently(hot_runtime: str, origin: Origin) -> None:
    async with AsyncClient(origin.url) as client:
        sandboxes = await asyncio.gather(*(AsyncSandbox.create(hot_runtime, client=client) for _ in range(3)))
        try:
            assert all(sb.hot for sb in sandboxes)
            assert len({sb.id for sb in sandboxes}) == 3
            got: List[Tuple[int, str, float]] = []
            t = time.monotonic()

            async def run(i: int, sb: AsyncSandbox) -> None:
                async def on_out(s: str) -> None:
                    got.append((i, s, time.monotonic() - t))

                r = await sb.exec(f"echo start {i}; sleep 1.5; echo end {i}; exit {i}", on_stdout=on_out)
                assert r.exit_code == i and r.stdout == f"start {i}\nend {i}\n"

            await asyncio.gather(*(run(i, sb) for i, sb in enumerate(sandboxes)))
            # Each command's first line arrived before any command's last: all three ran at
            # once, streaming as they went.
            starts = [at for _, s, at in got if s.startswith("start")]
            ends = [at for _, s, at in got if s.startswith("end")]
            assert len(starts) == 3 and len(ends) == 3, got
            assert max(starts) < min(ends), got
        finally:
            for sb in sandboxes:
                await sb.kill()


async def test_async_errors(packs: Packs, origin: Origin, auth_origin: Origin) -> None:
    with pytest.raises(NotFound):
        await AsyncSandbox.connect("sb-nope", base_url=origin.url)
    with pytest.raises(Unauthorized):
        await AsyncClient(auth_origin.url, token="wrong").stats()
    ref = packs.greeter(unique("abroken"), warm=[["/bin/sh", "-c", "echo nope >&2; exit 4"]])
    with pytest.raises(WarmFailed) as e:
        await AsyncSandbox.create(ref, base_url=origin.url)
    assert e.value.step == "warm" and "nope" in e.value.reason and "status 4" in e.value.reason
    name = unique("agated")
    gated_ref = packs.greeter(name, warm=gated(name))
    with pytest.raises(Timeout):
        await AsyncSandbox.create(gated_ref, base_url=origin.url, timeout=1.0)
    packs.origin.open_gate(packs.digest(name))
    async with AsyncClient(origin.url) as client:
        deadline = time.monotonic() + 30
        while not (await client.warm(gated_ref)).hot:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


async def test_async_context_manager_kills(hot_runtime: str, origin: Origin) -> None:
    async with AsyncClient(origin.url) as client:
        async with await AsyncSandbox.create(hot_runtime, client=client) as sb:
            sid = sb.id
            assert (await sb.refresh()).status == "ready"
        with pytest.raises(NotFound):
            await client.sandbox_info(sid)
