#!/usr/bin/env python3
"""lumo's benchmarks for the Lambda runner (issue "AWS"): each figure, its target, the ratio.

    bench/runner.py                   # builds lumo-runner in release mode, then measures
    bench/runner.py --runner PATH     # measure an existing binary
    bench/runner.py --runs 100        # more samples for the start-up figure

Figures (this machine; the runner runs against a stub Lambda Runtime API in this script, on
127.0.0.1, so nothing else is measured):
  1. exec -> first `GET /2018-06-01/runtime/invocation/next`   target <= 5 ms   (median)
     timed from just before `Popen` to the request's arrival in the stub's server thread
     (Python's own spawn cost is included; `sh -c true`'s exec-to-exit is printed beside it)
  2. peak RSS (VmHWM) serving one no-op invocation               target <= 10 MB
     a real `InvokeRequest`: the runner downloads a bundle zip from the stub (sha256 checked),
     unpacks it, runs `true`, PUTs its log to the stub and posts a `succeeded` response;
     VmHWM/VmRSS are read from /proc/<pid>/status after that response arrived
  3. the binary zipped as `bootstrap` (deflate)                  target <= 5 MB
     (the unzipped binary's size is printed beside it)

Exit code 0 when every figure meets its target, 1 when one misses, 2 when the runner does not
behave (never polls, the invocation does not succeed).
"""

import argparse
import hashlib
import http.server
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NEXT_PATH = "/2018-06-01/runtime/invocation/next"
FUNCTION_NAME = "bench-dev-lumo-runner"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION_NAME}"
MB = 1024 * 1024



def outcome_of(body: bytes) -> dict:
    """The outcome in a runner response: the final `r` frame of a streamed one (after
    lambda_runtime's prelude and `LUMO-STREAM/1`; runner/src/invoke/stream.rs), else the JSON."""
    line = b"LUMO-STREAM/1\n"
    at = body.find(line)
    if at < 0:
        return json.loads(body)
    rest = body[at + len(line):]
    while len(rest) >= 5:
        kind, size = rest[0:1], int.from_bytes(rest[1:5], "big")
        if kind in (b"r", b"e"):
            return json.loads(rest[5:5 + size])
        rest = rest[5 + size:]
    raise Failure("the runner's streamed response has no final frame")

class Failure(Exception):
    """The runner did not do what the benchmark needs (not a missed target)."""


def build_release() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    print("building lumo-runner (release)...", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "lumo-runner"], cwd=REPO, check=True)
    return target / "release" / "lumo-runner"


# --------------------------------------------------------------------------------------------
# the stub Runtime API (and the bundle / log endpoints of the one real invocation)

class Stub:
    """What the stub serves and what it saw. One stub per runner process."""

    def __init__(self):
        self.cond = threading.Condition()
        self.first_poll_at = None         # perf_counter() of the first GET .../next
        self.polls = 0
        self.event = None                 # (request_id, payload bytes) to hand out once, or None
        self.response = None              # (request_id, kind, body) once posted
        self.files = {}                   # GET path -> bytes
        self.uploads = {}                 # PUT path -> bytes
        self.closing = False

    def wait(self, predicate, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True


class StubServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stub: Stub


class StubHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StubServer

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        arrived = time.perf_counter()
        stub = self.server.stub
        path = self.path.split("?")[0]
        if path.rstrip("/") == NEXT_PATH:
            with stub.cond:
                stub.polls += 1
                if stub.first_poll_at is None:
                    stub.first_poll_at = arrived
                stub.cond.notify_all()
                # Long poll: hand out the event once, else hold the request until the end.
                while stub.event is None and not stub.closing:
                    stub.cond.wait(0.5)
                if stub.closing:
                    self.close_connection = True
                    return
                request_id, payload = stub.event
                stub.event = None
            deadline_ms = int(time.time() * 1000) + 60_000
            return self.reply(200, payload, {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
            })
        if path in stub.files:
            return self.reply(200, stub.files[path], {"Content-Type": "application/zip"})
        return self.reply(404, b'{"errorType":"NotFound"}')

    do_HEAD = do_GET

    def do_PUT(self):
        stub = self.server.stub
        body = self.body()
        with stub.cond:
            stub.uploads[self.path.split("?")[0]] = body
            stub.cond.notify_all()
        self.reply(200)

    def do_POST(self):
        stub = self.server.stub
        body = self.body()
        parts = self.path.split("?")[0].rstrip("/").split("/")
        # /2018-06-01/runtime/invocation/<id>/(response|error), /2018-06-01/runtime/init/error
        if len(parts) == 6 and parts[3] == "invocation" and parts[5] in ("response", "error"):
            with stub.cond:
                stub.response = (parts[4], parts[5], body)
                stub.cond.notify_all()
            return self.reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})
        if self.path.startswith("/2018-06-01/runtime/init/error"):
            with stub.cond:
                stub.response = ("init", "init-error", body)
                stub.cond.notify_all()
            return self.reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})
        return self.reply(404, b'{"errorType":"NotFound"}')


class Instance:
    """A stub server plus one runner process started against it."""

    def __init__(self, runner: Path, cache_dir: Path, log):
        self.stub = Stub()
        self.server = StubServer(("127.0.0.1", 0), StubHandler)
        self.server.stub = self.stub
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.runner = runner
        self.cache_dir = cache_dir
        self.log = log
        self.proc = None
        self.started_at = None

    def env(self):
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.port}",
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]bench",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
            "AWS_REGION": "us-east-1",
            "_HANDLER": "bootstrap",
            "LUMO_RUNNER_CACHE": str(self.cache_dir),
            "TMPDIR": str(self.cache_dir.parent),
        }

    def start(self):
        env = self.env()
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen([str(self.runner)], env=env, cwd=self.cache_dir.parent,
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        with self.stub.cond:
            self.stub.closing = True
            self.stub.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------------
# the figures

def bare_spawn_ms(runs):
    """Median exec -> exit of `sh -c true` from Python: the floor Popen itself puts under figure 1."""
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(["sh", "-c", "true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def measure_ready(runner: Path, runs: int, work: Path, log) -> list:
    samples = []
    for i in range(runs + 3):  # 3 warm-up starts: page cache, first-exec costs
        cache = work / f"ready-{i}" / "lumo"
        cache.parent.mkdir(parents=True)
        inst = Instance(runner, cache, log)
        try:
            inst.start()
            if not inst.stub.wait(lambda: inst.stub.first_poll_at is not None, 10):
                code = inst.proc.poll()
                raise Failure(f"the runner did not poll the Runtime API within 10 s"
                              f"{'' if code is None else f' (it exited with {code})'}; see {log.name}")
            if i >= 3:
                samples.append((inst.stub.first_poll_at - inst.started_at) * 1000)
        finally:
            inst.stop()
    return samples


def bundle_zip() -> bytes:
    """A deterministic bundle as `lumo build` makes one: the manifest, sorted, fixed time and mode."""
    manifest = json.dumps({"task": "noop", "entry": {"command": "true"}}, separators=(",", ":")).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("lumo-bundle.json", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = (0o100644 << 16)
        info.create_system = 3
        z.writestr(info, manifest)
    return buf.getvalue()


def read_status(pid: int) -> dict:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "VmSize", "Threads"):
                fields[key] = value.strip()
    return fields


def kib(value: str) -> int:
    number, unit = value.split()
    assert unit == "kB", value
    return int(number)


def measure_noop(runner: Path, work: Path, log) -> dict:
    cache = work / "noop" / "lumo"
    cache.parent.mkdir(parents=True)
    inst = Instance(runner, cache, log)
    try:
        zip_bytes = bundle_zip()
        sha = hashlib.sha256(zip_bytes).hexdigest()
        base = f"http://127.0.0.1:{inst.port}"
        bundle_path = f"/bench-bucket/bench/bundles/{sha}.zip"
        log_path = "/bench-bucket/bench/logs/run-1.log"
        inst.stub.files[bundle_path] = zip_bytes
        run_id = "01JBENCH0000000000000000NO"
        request = {
            "task": "noop",
            "bundle": {"key": f"bench/bundles/{sha}.zip", "sha256": sha,
                       "url": f"{base}{bundle_path}?X-Amz-Signature=bench"},
            "context": {
                "deployment": {"isFirstDeploy": True, "environment": "dev", "version": "v1"},
                "config": {}, "args": {}, "workingDirectory": "", "task": "noop",
                "runId": run_id, "trigger": "deploy",
            },
            "timeoutMs": 30_000,
            "env": {},
            "secrets": {"API_TOKEN": "bench-secret-0123"},
            "logUpload": {"key": "bench/logs/run-1.log", "url": f"{base}{log_path}?X-Amz-Signature=bench"},
            "dataUpload": {"key": "bench/logs/run-1.data.json",
                           "url": f"{base}/bench-bucket/bench/logs/run-1.data.json?X-Amz-Signature=bench"},
            # As the CLI sends it: the runner watches for it while the task runs (404 = go on).
            "cancelUrl": f"{base}/bench-bucket/bench/logs/run-1.cancel?X-Amz-Signature=bench",
        }
        inst.start()
        if not inst.stub.wait(lambda: inst.stub.first_poll_at is not None, 10):
            raise Failure(f"the runner did not poll the Runtime API within 10 s; see {log.name}")
        before = read_status(inst.proc.pid)
        request_id = str(uuid.uuid4())
        t0 = time.perf_counter()
        with inst.stub.cond:
            inst.stub.event = (request_id, json.dumps(request).encode())
            inst.stub.cond.notify_all()
        if not inst.stub.wait(lambda: inst.stub.response is not None, 30):
            raise Failure(f"no response from the runner within 30 s; see {log.name}")
        invoke_ms = (time.perf_counter() - t0) * 1000
        # The runner is back to polling (or about to be): everything it touched for the
        # invocation is in its peak.
        inst.stub.wait(lambda: inst.stub.polls >= 2, 2)
        after = read_status(inst.proc.pid)
        rid, kind, body = inst.stub.response
        if kind != "response" or rid != request_id:
            raise Failure(f"the runner posted `{kind}` for {rid}: {body.decode(errors='replace')}")
        response = outcome_of(body)
        if response.get("status") != "succeeded":
            raise Failure(f"the no-op task did not succeed: {json.dumps(response)}")
        return {
            "before": before, "after": after, "response": response, "invoke_ms": invoke_ms,
            "log_uploaded": log_path in inst.stub.uploads,
        }
    finally:
        inst.stop()


def measure_zip(runner: Path) -> tuple:
    """(binary bytes, zip bytes): the binary as `bootstrap`, deflated, mode 755."""
    data = runner.read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = (0o100755 << 16)
        info.create_system = 3
        z.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    return len(data), len(buf.getvalue())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runner", type=Path, help="the lumo-runner binary (default: build it in release mode)")
    parser.add_argument("--runs", type=int, default=50, help="starts timed for figure 1 (at least 30; default 50)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (runner logs) and print it")
    args = parser.parse_args()
    if args.runs < 30:
        parser.error("--runs must be at least 30")
    runner = (args.runner or build_release()).resolve()
    if not runner.is_file():
        parser.error(f"no runner binary at {runner}")

    work = Path(tempfile.mkdtemp(prefix="lumo-bench-runner-"))
    log = open(work / "runner.log", "ab")
    results = []
    try:
        samples = measure_ready(runner, args.runs, work, log)
        bare = bare_spawn_ms(args.runs)
        ready = statistics.median(samples)
        results.append(("exec -> first poll of the Runtime API", ready, 5.0, "ms",
                        f"median of {len(samples)}; min {min(samples):.2f}, p90 "
                        f"{sorted(samples)[int(len(samples) * 0.9) - 1]:.2f}, max {max(samples):.2f} ms; "
                        f"`sh -c true` exec->exit {bare:.2f} ms"))

        noop = measure_noop(runner, work, log)
        hwm = kib(noop["after"]["VmHWM"]) / 1024
        results.append(("peak RSS (VmHWM), one no-op invocation", hwm, 10.0, "MB",
                        f"VmRSS {kib(noop['after']['VmRSS']) / 1024:.1f} MB after; at first poll "
                        f"VmHWM {kib(noop['before']['VmHWM']) / 1024:.1f} MB; "
                        f"threads {noop['before'].get('Threads')}->{noop['after'].get('Threads')}; "
                        f"invoke {noop['invoke_ms']:.1f} ms, status {noop['response']['status']}, "
                        f"log uploaded {noop['log_uploaded']}"))

        binary, zipped = measure_zip(runner)
        results.append(("runner zip (bootstrap, deflate)", zipped / MB, 5.0, "MB",
                        f"binary {binary / MB:.2f} MB ({binary:,} bytes), zip {zipped:,} bytes"))
    except Failure as e:
        print(f"error: {e}", file=sys.stderr)
        args.keep = True
        sys.exit(2)
    finally:
        log.close()
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(f"runner: {runner}")
    print(f"{'figure':<42} {'measured':>10} {'target':>8} {'ratio':>7}")
    failed = False
    for name, value, target, unit, note in results:
        ratio = value / target
        failed |= ratio > 1
        print(f"{name:<42} {value:>8.2f}{unit} {target:>6.0f}{unit} {ratio:>6.2f}x  {note}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
