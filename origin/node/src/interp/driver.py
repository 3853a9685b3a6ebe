# prewarm's Python driver: runs code sent as data on stdin, notebook style; see origin/node/src/interp/mod.rs.
#
# Protocol (JSON lines). In, on stdin:  {"op":"setup","env":{..},"context":str|null}
#                                       {"op":"run","code":str}
# Out, on the original stdout (kept on a private descriptor):
#   {"ready":{"rss_bytes":N,"preload_failed":[{"module","error"}]}}   once, after the preloads
#   {"stream":"stdout"|"stderr","data":str}                           output, as it comes
#   {"done":{"result":str|null,"error":{"name","value","traceback"}|null}}  end of one run
# Descriptors 1 and 2 are pipes this process drains, so output of child processes and of C
# code is captured too. User code is never part of a command line or of source text here.
import ast
import builtins
import codecs
import fcntl
import io
import json
import linecache
import os
import select
import sys
import termios
import threading
import traceback

MAX_RESULT = 1 << 20
CONTEXT_ENV = "PREWARM_CONTEXT"


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class Out:
    def __init__(self):
        self.fd = os.dup(1)
        os.set_inheritable(self.fd, False)
        self.lock = threading.Lock()

    def send(self, obj):
        data = (json.dumps(obj) + "\n").encode()
        with self.lock:
            write_all(self.fd, data)


class Pump:
    """Drains the pipes now behind descriptors 1 and 2, forwarding what arrives."""

    def __init__(self, out):
        self.out = out
        self.lock = threading.Lock()
        self.fds = {}
        for target, name in ((1, "stdout"), (2, "stderr")):
            r, w = os.pipe()
            os.dup2(w, target)
            os.close(w)
            os.set_blocking(r, False)
            os.set_inheritable(r, False)
            self.fds[r] = (name, codecs.getincrementaldecoder("utf-8")("replace"))
        threading.Thread(target=self.loop, daemon=True).start()

    def read_ready(self, fd):
        name, dec = self.fds[fd]
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            text = dec.decode(chunk)
            if text:
                self.out.send({"stream": name, "data": text})

    def loop(self):
        while True:
            ready, _, _ = select.select(list(self.fds), [], [])
            with self.lock:
                for fd in ready:
                    self.read_ready(fd)

    def drain(self):
        """Forwards everything written so far (under the lock: nothing is half-sent)."""
        with self.lock:
            for fd in self.fds:
                buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
                if int.from_bytes(buf, sys.byteorder):
                    self.read_ready(fd)


def rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def error_of(e, skip):
    tb = e.__traceback__
    for _ in range(skip):
        if tb is not None:
            tb = tb.tb_next
    text = "".join(traceback.format_exception(type(e), e, tb))
    return {"name": type(e).__name__, "value": str(e), "traceback": text}


class Cells:
    def __init__(self):
        self.ns = {"__name__": "__main__", "__builtins__": builtins}
        self.n = 0

    def run(self, code):
        self.n += 1
        name = f"<cell-{self.n}>"
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        try:
            tree = ast.parse(code, name, "exec")
        except SyntaxError as e:
            return None, error_of(e, 2)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        try:
            exec(compile(tree, name, "exec"), self.ns)
            if last is None:
                return None, None
            value = eval(compile(last, name, "eval"), self.ns)
        except BaseException as e:  # SystemExit and KeyboardInterrupt are the cell's too
            return None, error_of(e, 1)
        if value is None:
            return None, None
        self.ns["_"] = value
        try:
            text = repr(value)
        except BaseException as e:
            return None, error_of(e, 1)
        return text[:MAX_RESULT], None


def main():
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    out = Out()
    inp = os.fdopen(os.dup(0), "rb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    failed = []
    for m in config.get("preload", []):
        try:
            __import__(m)
        except BaseException as e:
            failed.append({"module": m, "error": f"{type(e).__name__}: {e}"})
    pump = Pump(out)
    # Line-buffered, as a terminal: a line reaches the client when it is complete (or flushed).
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.argv = [""]
    cells = Cells()
    out.send({"ready": {"rss_bytes": rss_bytes(), "preload_failed": failed}})
    for line in inp:
        msg = json.loads(line)
        op = msg.get("op")
        if op == "setup":
            os.environ.update(msg.get("env") or {})
            if msg.get("context") is not None:
                os.environ[CONTEXT_ENV] = msg["context"]
        elif op == "run":
            result, error = cells.run(msg["code"])
            for s in (sys.stdout, sys.stderr):
                try:
                    s.flush()
                except BaseException:
                    pass
            pump.drain()
            out.send({"done": {"result": result, "error": error}})
    os._exit(0)


main()
