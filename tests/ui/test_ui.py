"""`/ui` in a real headless browser (Debian's chromium through its chromedriver; nothing is
downloaded): the token prompt, a cold create whose progress bar moves step by step and reaches
ready, the hot-start rate after a hot create, the time-to-ready chart, and a screenshot for the
docs (docs/ui.png, and docs/ui-warming.png mid-warm).

The runtime's warm commands wait for gate files the test creates one at a time, so every move of
the bar is caused by the test, never by timing. Run by scripts/ui-test (from scripts/test).
"""

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("PREWARM_BIN", ROOT / "target" / "debug" / "prewarm"))
TOKEN = "ui-test-token"
NAME = "uitest"
GATES = 3
WAIT = 60


def request(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read() or b"null")


@pytest.fixture(scope="module")
def origin():
    missing = [t for t in ("bwrap", "prlimit", "chromium", "chromedriver") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run scripts/sandbox-tools and scripts/browser-tools")
    if not BIN.exists():
        pytest.fail(f"{BIN} is missing: cargo build -p prewarm-origin --bins")
    work = Path(tempfile.mkdtemp(prefix="prewarm-ui-"))
    (work / "token").write_text(TOKEN + "\n")
    proc = subprocess.Popen(
        [str(BIN), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(work / "data"),
         "--token-file", str(work / "token")],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, PREWARM_LOG="warn"))
    url = None
    for line in proc.stdout:
        if line.startswith("listening on "):
            url = line[len("listening on "):].strip()
            break
    assert url, "prewarm serve exited before listening"
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    yield url, work
    proc.terminate()
    proc.wait(timeout=20)
    shutil.rmtree(work, ignore_errors=True)


def push(url, work):
    """NAME:v1, whose warm commands each wait for a gate file; returns its digest."""
    pack = work / "pack"
    (pack / "layers").mkdir(parents=True)
    warm = [["/bin/sh", "-c", f"while [ ! -e /opt/{NAME}/gate{n} ]; do sleep 0.05; done"] for n in range(GATES)]
    meta = {"name": NAME, "version": "1.0.0", "layers": ["base"], "prefix": f"/opt/{NAME}",
            "env": {"PATH": "/usr/bin:/bin"}, "warm": warm}
    (pack / "meta.json").write_text(json.dumps(meta))
    (pack / "lock.json").write_text(json.dumps({"packages": [{"name": "base", "version": "1", "layer": "base"}]}))
    readme = pack / "README"
    readme.write_text("a runtime for the /ui test\n")
    with tarfile.open(pack / "layers" / "base.tar.gz", "w:gz") as tar:
        tar.add(readme, arcname="README")
    out = subprocess.run([str(BIN), "push", str(pack), "--name", f"{NAME}:v1", "--to", url, "--json"],
                         capture_output=True, text=True, env=dict(os.environ, PREWARM_TOKEN=TOKEN, PREWARM_LOG="warn"))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["digest"]


def open_gate(work, digest, n):
    """Creates gate file `n` in the runtime's build directory (its prefix to the warm commands)."""
    prefix = f".warming-{digest.removeprefix('sha256:')}-"
    runtimes = work / "data" / "node-v1" / "runtimes"
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for d in runtimes.glob(prefix + "*"):
            (d / f"gate{n}").write_bytes(b"")
            return
        time.sleep(0.05)
    raise AssertionError(f"no build directory {prefix}* appeared")


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,1100"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=opts)
    yield driver
    driver.quit()


def wait_for(browser, what, fn):
    try:
        return WebDriverWait(browser, WAIT, poll_frequency=0.05).until(lambda _: fn())
    except Exception as e:
        raise AssertionError(f"timed out waiting for {what}") from e


def js(browser, script):
    return browser.execute_script(script)


def progress(browser):
    """The bar of NAME:v1 while it warms: (value, caption), else None."""
    return js(browser, f"""
        const row = document.querySelector('#runtimes tr[data-runtime="{NAME}:v1"][data-state="warming"]');
        const bar = row && row.querySelector('progress');
        return bar ? [bar.value, row.querySelector('.step').textContent] : null;""")


def hot_rate(browser):
    return js(browser, f"""
        const c = document.querySelector('#rates tr[data-runtime="{NAME}"] .hot-rate');
        return c ? c.textContent : null;""")


def test_live_view(origin, browser):
    url, work = origin
    digest = push(url, work)

    # Same auth as the API: the page asks for the token.
    browser.get(f"{url}/ui")
    wait_for(browser, "the token prompt", lambda: browser.find_element(By.ID, "login").is_displayed())
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_for(browser, "the dashboard", lambda: browser.find_element(By.ID, "main").is_displayed())

    # A cold create: the bar appears, moves with each warm command, then the runtime is hot.
    status, sb = request(f"{url}/v1/sandboxes", "POST", {"runtime": f"{NAME}:v1", "user_id": "alice"})
    assert status == 202 and not sb["hot"], sb
    seen = [wait_for(browser, "the progress bar", lambda: progress(browser))]
    for n in range(GATES):
        before = seen[-1][0]
        open_gate(work, digest, n)
        if n < GATES - 1:
            seen.append(wait_for(browser, f"the bar to pass {before} after gate {n}",
                                 lambda: (p := progress(browser)) and p[0] > before and p))
            if n == 0:
                browser.save_screenshot(str(ROOT / "docs" / "ui-warming.png"))
    assert all(0 < v < 1 for v, _ in seen[1:]), seen
    assert "warm" in seen[-1][1] and "ETA" in seen[-1][1], seen
    wait_for(browser, "the runtime to be hot", lambda: js(
        browser, f"return !!document.querySelector('#runtimes tr[data-runtime=\"{NAME}:v1\"][data-state=\"hot\"]')"))
    assert progress(browser) is None
    wait_for(browser, "the hot-start rate after one cold create", lambda: hot_rate(browser) == "0%")

    # A hot create moves the hot-start rate to 1 of 2.
    status, sb2 = request(f"{url}/v1/sandboxes", "POST", {"runtime": f"{NAME}:v1", "user_id": "bob"})
    assert status == 201 and sb2["hot"], sb2
    wait_for(browser, "the hot-start rate after a hot create", lambda: hot_rate(browser) == "50%")

    # Both starts are on the chart, and both sandboxes are listed with their users.
    wait_for(browser, "a hot and a cold point on the chart", lambda: js(browser, """
        return !!document.querySelector('#chart circle[data-start="hot"]')
            && !!document.querySelector('#chart circle[data-start="cold"]')"""))
    users = js(browser, "return [...document.querySelectorAll('#sandboxes tbody tr td:nth-child(2)')].map(e => e.textContent)")
    assert sorted(users) == ["alice", "bob"], users
    served = wait_for(browser, "the disk tier's row", lambda: js(
        browser, "const c = document.querySelector('#tiers tr[data-tier=\"disk\"] .served'); return c && c.textContent"))
    assert served != "0 B", served  # the warm read the runtime's blocks from disk

    browser.save_screenshot(str(ROOT / "docs" / "ui.png"))
