#!/usr/bin/env python3
"""lumo emulator harness: moto + a built-in Lambda executor behind one loopback router.

Run it with the Python of the venv that `tests/emulators/setup` creates:

    "$(tests/emulators/setup)/bin/python" tests/emulators/harness.py \
        --workspace . --log-dir target/emulators [--parent-pid PID] [--port 0]

When everything is ready it prints exactly one JSON line on stdout and keeps running:

    {"endpoint": "http://127.0.0.1:PORT", "pids": {...}, "logDir": "...", "runnerRoleArn": "..."}

It stops (killing every process it started, with their whole trees) on SIGTERM/SIGINT/SIGHUP
and when --parent-pid no longer exists. See README.md beside this file.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import ctypes
import datetime
import http.client
import http.server
import io
import itertools
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import struct
import uuid
import zipfile
import zlib

LOOPBACK = "127.0.0.1"
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
RUNNER_SUFFIX = "-lumo-runner"
RUNNER_BIN_NAME = "lumo-runner"
DEFAULT_ROLE_NAME = "lumo-runner-role"
# Lambda's limits for synchronous invocations.
MAX_REQUEST_PAYLOAD = 6291456
MAX_RESPONSE_PAYLOAD = 6291556
# Lambda's (soft) limit on a streamed response: --stream-limit changes it.
DEFAULT_STREAM_LIMIT = 20 * 1024 * 1024
STREAMING_PREFIX = "/2021-11-15/functions"
# Where a managed runtime's package is unpacked and where its Node.js is, on Lambda.
LAMBDA_TASK_ROOT = "/var/task"
LAMBDA_NODE = "/var/lang/bin/node"
LAMBDA_NODE_RUNTIME_CLIENT = "/var/runtime/index.mjs"
# Headers that describe one hop, not the message; the router sets its own framing.
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "expect",
}
LAMBDA_PREFIX = "/2015-03-31/functions"
SETUP_HINT = "run tests/emulators/setup (it prints the venv path) and start harness.py with <venv>/bin/python"

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


# --------------------------------------------------------------------------------------------
# logging (to a file only once the JSON line is out: the parent may never read our stderr)

class Log:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.file = None
        self.to_stderr = True

    def open(self, path: str) -> None:
        self.file = open(path, "a", buffering=1, encoding="utf-8")

    def __call__(self, msg: str) -> None:
        line = f"{datetime.datetime.now().isoformat(timespec='milliseconds')} {msg}\n"
        with self.lock:
            if self.file:
                self.file.write(line)
            if self.to_stderr:
                try:
                    sys.stderr.write("lumo-emulators: " + msg + "\n")
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass


log = Log()


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------------------------
# process management: one long-lived spawner thread (so PR_SET_PDEATHSIG ties every child to
# this process even if it is SIGKILLed), process groups, whole-tree kills, subreaping

_libc = None


def libc():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _libc = False
    return _libc


def _child_preexec(parent_pid: int) -> None:
    lc = libc()
    if lc:
        lc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the harness died between fork and prctl
        os._exit(1)


class Spawner:
    def __init__(self) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")
        self.known: set[int] = set()
        self.lock = threading.Lock()

    def spawn(self, argv, **kw) -> subprocess.Popen:
        me = os.getpid()

        def run():
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=lambda: _child_preexec(me), **kw)

        proc = self.pool.submit(run).result()
        with self.lock:
            self.known.add(proc.pid)
        return proc

    def forget(self, pid: int) -> None:
        with self.lock:
            self.known.discard(pid)


spawner = Spawner()


def proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (ppid, state, session id) for every process visible in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        rest = data[data.rfind(")") + 2:].split()
        if len(rest) < 4:
            continue
        table[int(entry)] = (int(rest[1]), rest[0], int(rest[3]))
    return table


def descendants(root: int, table=None) -> list[int]:
    table = table if table is not None else proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def signal_tree(root: int, sig: int) -> None:
    """Signals a child started with start_new_session, everything below it, and everything
    still in its session (also after it exited: a runner's detached task processes)."""
    table = proc_table()
    pids = [root] + descendants(root, table) + [p for p, (_, _, sid) in table.items() if sid == root]
    try:
        os.killpg(root, sig)  # children were started with start_new_session: pgid == pid
    except OSError:
        pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def kill_tree(proc: subprocess.Popen | None, grace: float = 0.0) -> None:
    if proc is None:
        return
    if proc.poll() is None and grace > 0:
        signal_tree(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    signal_tree(proc.pid, signal.SIGKILL)  # also the grandchildren an early exit left behind
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def reap_adopted_orphans() -> None:
    """We are a child subreaper: orphaned grandchildren become our children. Reap the zombies
    among them, but never a child a Popen object is waiting for."""
    me = os.getpid()
    with spawner.lock:
        known = set(spawner.known)
    for pid, (ppid, state, _) in proc_table().items():
        if ppid == me and state == "Z" and pid not in known:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def process_start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    if rest and rest[0] in ("Z", "X"):
        return None  # dead, only not reaped yet
    return rest[19] if len(rest) > 19 else "?"


# --------------------------------------------------------------------------------------------
# HTTP helpers

class BodyReader:
    """Reads a request body framed by Content-Length or chunked transfer coding."""

    def __init__(self, rfile, headers) -> None:
        self.rfile = rfile
        self.chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        self.remaining = 0 if self.chunked else int(headers.get("Content-Length") or 0)
        self.chunk_left = 0
        self.done = not self.chunked and self.remaining == 0
        # trailer fields after the last chunk (a streamed function response reports an error
        # that happens mid-stream in them), names lower-cased
        self.trailers: dict[str, str] = {}

    def read(self, n: int = 65536) -> bytes:
        if self.done:
            return b""
        if not self.chunked:
            data = self.rfile.read(min(n, self.remaining))
            if not data:
                raise ConnectionError("client closed the connection in the middle of the body")
            self.remaining -= len(data)
            self.done = self.remaining == 0
            return data
        if self.chunk_left == 0:
            line = self.rfile.readline(65537)
            if not line:
                raise ConnectionError("client closed the connection in a chunked body")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    t = self.rfile.readline(65537)
                    if t in (b"\r\n", b"\n", b""):
                        break
                    name, sep, value = t.decode("latin-1").partition(":")
                    if sep:
                        self.trailers[name.strip().lower()] = value.strip()
                self.done = True
                return b""
            self.chunk_left = size
        data = self.rfile.read(min(n, self.chunk_left))
        if not data:
            raise ConnectionError("client closed the connection in a chunk")
        self.chunk_left -= len(data)
        if self.chunk_left == 0:
            self.rfile.readline(3)  # CRLF after the chunk
        return data

    def read_all(self, limit: int | None = None) -> bytes:
        parts, total = [], 0
        while True:
            piece = self.read()
            if not piece:
                return b"".join(parts)
            total += len(piece)
            if limit is not None and total > limit:
                self.drain()
                raise OverflowError(total)
            parts.append(piece)

    def drain(self) -> None:
        while self.read():
            pass


def json_bytes(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------
# application/vnd.amazon.eventstream, as InvokeWithResponseStream answers (and as the SDKs'
# decoders check it): each message is
#   total length (u32) | headers length (u32) | CRC32 of those 8 bytes (u32)
#   | headers | payload | CRC32 of everything before it (u32)
# all big-endian; a header is name length (u8), name, value type (7 = string), value length
# (u16), value. Lambda sends `:event-type`, `:content-type`, `:message-type`, in that order.

EVENTSTREAM_STRING = 7


def eventstream_message(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    encoded = b"".join(
        struct.pack(">B", len(name)) + name + struct.pack(">BH", EVENTSTREAM_STRING, len(value)) + value
        for name, value in ((n.encode(), v.encode()) for n, v in headers))
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def payload_chunk_event(data: bytes) -> bytes:
    return eventstream_message([(":event-type", "PayloadChunk"),
                                (":content-type", "application/octet-stream"),
                                (":message-type", "event")], data)


def invoke_complete_event(fields: dict) -> bytes:
    return eventstream_message([(":event-type", "InvokeComplete"),
                                (":content-type", "application/json"),
                                (":message-type", "event")], json_bytes(fields))


def fake_auth(service: str, region: str = DEFAULT_REGION, key: str = "testing") -> str:
    day = time.strftime("%Y%m%d", time.gmtime())
    return (f"AWS4-HMAC-SHA256 Credential={key}/{day}/{region}/{service}/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}")


def scoped_auth(auth: str | None, service: str) -> str:
    """The caller's SigV4 Authorization with the credential scope's service replaced (moto
    picks account, region and service from it and does not check signatures)."""
    m = re.search(r"Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request", auth or "")
    if not m:
        return fake_auth(service)
    return fake_auth(service, region=m.group(3), key=m.group(1))


# --------------------------------------------------------------------------------------------
# moto

class Moto:
    def __init__(self, venv_bin: str, log_dir: str) -> None:
        self.exe = os.path.join(venv_bin, "moto_server")
        self.log_path = os.path.join(log_dir, "moto.log")
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.exited: int | None = None

    def start(self) -> None:
        if not os.path.exists(self.exe):
            raise SystemExit(f"lumo-emulators: {self.exe} not found: {SETUP_HINT}")
        env = dict(os.environ)
        env.update(PYTHONUNBUFFERED="1", AWS_EC2_METADATA_DISABLED="true",
                   AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        env.pop("AWS_ENDPOINT_URL", None)
        out = open(self.log_path, "ab")
        # -p 0: werkzeug binds a free port itself and prints it ("Running on http://...:PORT"),
        # so there is no window between choosing a port and binding it.
        self.proc = spawner.spawn([self.exe, "-H", LOOPBACK, "-p", "0"], stdout=out,
                                  stderr=subprocess.STDOUT, env=env)
        out.close()
        threading.Thread(target=self._watch, daemon=True, name="moto-watch").start()

    def _watch(self) -> None:
        rc = self.proc.wait()
        spawner.forget(self.proc.pid)
        self.exited = rc
        if not shutting_down.is_set():
            log(f"moto exited unexpectedly with {rc}: see {self.log_path}")

    def tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.exited is not None:
                raise RuntimeError(f"moto_server exited with {self.exited}:\n{self.tail()}")
            if self.port is None:
                m = re.search(r"Running on http://127\.0\.0\.1:(\d+)", self.tail(200))
                if m:
                    self.port = int(m.group(1))
            if self.port is not None:
                try:
                    status, _, _ = self.request("GET", "/moto-api/")
                    if status < 500:
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"moto_server not ready after {timeout:.0f} s:\n{self.tail()}")

    def connection(self, timeout: float | None) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=timeout)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None):
        conn = self.connection(60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def ensure_role(self, name: str) -> str:
        """Creates (or finds) an IAM role that Lambda may assume; moto's CreateFunction refuses a
        role that does not exist."""
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]})
        hdrs = {"Authorization": fake_auth("iam"), "Content-Type": "application/x-www-form-urlencoded"}
        form = urllib.parse.urlencode({"Action": "CreateRole", "Version": "2010-05-08",
                                       "RoleName": name, "AssumeRolePolicyDocument": trust}).encode()
        status, _, body = self.request("POST", "/", form, hdrs)
        if status != 200 and b"EntityAlreadyExists" not in body:
            raise RuntimeError(f"moto CreateRole {name}: HTTP {status}: {body[:500]!r}")
        if status != 200:
            form = urllib.parse.urlencode({"Action": "GetRole", "Version": "2010-05-08",
                                           "RoleName": name}).encode()
            status, _, body = self.request("POST", "/", form, hdrs)
        m = re.search(rb"<Arn>([^<]+)</Arn>", body)
        if status != 200 or not m:
            raise RuntimeError(f"moto GetRole {name}: HTTP {status}: {body[:500]!r}")
        return m.group(1).decode()


# --------------------------------------------------------------------------------------------
# the Lambda executor: a Runtime API per instance, the workspace's lumo-runner as the runtime

class Throttled(Exception):
    pass


class Invocation:
    def __init__(self, request_id: str, payload: bytes, client_context: str | None,
                 invoked_arn: str, want_tail: bool) -> None:
        self.request_id = request_id
        self.payload = payload
        self.client_context = client_context
        self.invoked_arn = invoked_arn
        self.want_tail = want_tail
        self.cond = threading.Condition()
        self.state = "queued"  # queued -> delivered -> done; queued -> bounced (retry once)
        self.result_error: str | None = None  # None = success, else X-Amz-Function-Error
        self.body = b""
        self.deadline_ms = 0
        self.instance: Instance | None = None
        self.log_offset = 0
        self.log_tail = b""
        self.started = time.monotonic()
        # InvokeWithResponseStream: the router's queue of ("chunk", bytes) as the function
        # streams its response, then ("end",) once finish() has run; None for a buffered Invoke
        self.listener: queue.Queue | None = None
        self.stream_limit = DEFAULT_STREAM_LIMIT
        self.streamed_bytes = 0  # of a streamed response, relayed or not
        self.stream_overflow = False  # the function streamed past stream_limit

    def stream(self, data: bytes) -> bool:
        """A piece of a streamed response, as the function wrote it; False once the invocation
        is over (timed out, say) and the rest is dropped."""
        with self.cond:
            if self.state != "delivered":
                return False
            self.streamed_bytes += len(data)
            if self.streamed_bytes > self.stream_limit:
                # Lambda cuts a stream at its limit and reports the invocation failed
                self.stream_overflow = True
                return True
            if self.listener is not None:
                self.listener.put(("chunk", data))
            return True

    def deliver(self, deadline_ms: int) -> bool:
        with self.cond:
            if self.state != "queued":
                return False
            self.state = "delivered"
            self.deadline_ms = deadline_ms
            self.cond.notify_all()
            return True

    def finish(self, body: bytes, error: str | None = None) -> bool:
        with self.cond:
            if self.state in ("done", "bounced"):
                return False
            self.state = "done"
            self.body = body
            self.result_error = error
            self.cond.notify_all()
            return True

    def bounce(self) -> bool:
        with self.cond:
            if self.state != "queued":
                return False
            self.state = "bounced"
            self.cond.notify_all()
            return True

    def wait_while(self, state: str, until_monotonic: float | None) -> str:
        with self.cond:
            while self.state == state:
                if until_monotonic is None:
                    self.cond.wait()
                else:
                    left = until_monotonic - time.monotonic()
                    if left <= 0:
                        break
                    self.cond.wait(left)
            return self.state


def error_body(error_type: str, message: str) -> bytes:
    return json_bytes({"errorMessage": message, "errorType": error_type})


class RuntimeApiServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    instance: "Instance"


class NoDelayHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler with Nagle off: headers and body go out in separate writes,
    and Nagle + the peer's delayed ACK would add ~40 ms to every small response."""
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class RuntimeApiHandler(NoDelayHandler):
    server: RuntimeApiServer

    def log_message(self, fmt, *args):  # noqa: D401 - silence the default stderr access log
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):
        inst = self.server.instance
        if self.path.rstrip("/") != "/2018-06-01/runtime/invocation/next":
            return self._reply(404, error_body("NotFound", f"unknown runtime API path {self.path}"))
        inv = inst.next_invocation()
        if inv is None:  # the instance is being torn down
            self.close_connection = True
            return self._reply(500, error_body("InstanceStopping", "instance is shutting down"))
        headers = {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": inv.invoked_arn,
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
        }
        if inv.client_context:
            headers["Lambda-Runtime-Client-Context"] = inv.client_context
        self._reply(200, inv.payload, headers)

    def do_POST(self):
        inst = self.server.instance
        reader = BodyReader(self.rfile, self.headers)
        path = self.path.rstrip("/")
        m = re.fullmatch(r"/2018-06-01/runtime/invocation/([^/]+)/(response|error)", path)
        mode = (self.headers.get("Lambda-Runtime-Function-Response-Mode") or "").lower()
        if m and m.group(2) == "response" and mode == "streaming":
            return self._streamed_response(inst, m.group(1), reader)
        body = reader.read_all()
        if m:
            req_id, kind = m.group(1), m.group(2)
            if kind == "error" and not body:
                etype = self.headers.get("Lambda-Runtime-Function-Error-Type") or "Unhandled"
                body = error_body(etype, "")
            if inst.complete(req_id, body, None if kind == "response" else "Unhandled"):
                return self._reply(202, b'{"status":"OK"}')
            return self._reply(400, error_body("InvalidRequestID", f"no current invocation {req_id}"))
        if path == "/2018-06-01/runtime/init/error":
            inst.init_error(body or error_body("Runtime.Unknown", "init error"))
            return self._reply(202, b'{"status":"OK"}')
        return self._reply(404, error_body("NotFound", f"unknown runtime API path {self.path}"))


    def _streamed_response(self, inst: "Instance", req_id: str, reader: BodyReader) -> None:
        """A response in Lambda's streaming mode: a chunked body relayed piece by piece as the
        runtime writes it (to an InvokeWithResponseStream caller), an error that happens after
        the stream began in the trailers `Lambda-Runtime-Function-Error-Type` and
        `Lambda-Runtime-Function-Error-Body` (base64). Lambda answers once the body has ended."""
        inv = inst.current_invocation(req_id)
        if inv is None:
            reader.drain()
            return self._reply(400, error_body("InvalidRequestID", f"no current invocation {req_id}"))
        buffered = inv.listener is None  # a plain Invoke gets the whole body at the end
        parts, kept = [], 0
        while True:
            try:
                piece = reader.read()
            except ConnectionError:
                # the runtime went away mid-stream; the instance's watcher fails the invocation
                self.close_connection = True
                return None
            if not piece:
                break
            inv.stream(piece)
            if buffered and kept <= MAX_RESPONSE_PAYLOAD:
                parts.append(piece)
                kept += len(piece)
        error_type = reader.trailers.get("lambda-runtime-function-error-type")
        error = None
        if error_type:
            raw = reader.trailers.get("lambda-runtime-function-error-body", "")
            try:
                details = base64.b64decode(raw, validate=True).decode("utf-8", "replace")
            except ValueError:
                details = raw
            body, error = error_body(error_type, details), "Unhandled"
        elif inv.stream_overflow:
            body, error = error_body(
                "Function.ResponseSizeTooLarge",
                f"Response payload size exceeded maximum allowed payload size ({inv.stream_limit} bytes)."), "Unhandled"
        else:
            body = b"".join(parts)
        if inst.complete(req_id, body, error):
            return self._reply(202, b'{"status":"OK"}')
        return self._reply(400, error_body("InvalidRequestID", f"no current invocation {req_id}"))


class Instance:
    def __init__(self, pool: "FunctionPool", seq: int, cfg: dict, first: Invocation) -> None:
        self.pool = pool
        self.seq = seq
        self.cfg = cfg
        self.timeout_s = float(cfg.get("Timeout") or 3)
        self.cond = threading.Condition()
        self.pending: Invocation | None = first
        self.current: Invocation | None = None
        self.served = 0
        self.retiring = False
        self.dead = False
        self.kill_reason: str | None = None
        first.instance = self
        base = os.path.join(pool.executor.log_dir, "lambda", pool.safe_name)
        os.makedirs(base, exist_ok=True)
        self.log_path = os.path.join(base, f"instance-{seq}.log")
        self.work = os.path.join(pool.executor.work_dir, pool.safe_name, f"instance-{seq}")
        self.tmp = os.path.join(self.work, "tmp")
        os.makedirs(self.tmp, exist_ok=True)
        self.task_root = self.work
        self.server = RuntimeApiServer((LOOPBACK, 0), RuntimeApiHandler)
        self.server.instance = self
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True, name=f"rtapi-{pool.safe_name}-{seq}").start()
        self.logf = open(self.log_path, "ab", buffering=0)
        try:
            argv = self._start_command()
            env = self._env()
            self._log_line(f"INIT_START instance={seq} runtime={cfg.get('Runtime')} "
                           f"command={' '.join(argv)} runtime-api=127.0.0.1:{self.port} "
                           f"timeout={self.timeout_s:g}s")
            self.proc = spawner.spawn(argv, cwd=self.task_root, env=env,
                                      stdout=self.logf, stderr=subprocess.STDOUT)
        except (OSError, RuntimeError) as e:
            self._log_line(f"SPAWN FAILED: {e}")
            self._close()
            raise RuntimeError(f"cannot start the function: {e}") from e
        self.pid = self.proc.pid
        threading.Thread(target=self._watch, daemon=True, name=f"inst-{seq}-watch").start()

    def _start_command(self) -> list[str]:
        """What Lambda starts for this function's runtime.

        A custom runtime (`provided.*`) runs the package's `bootstrap`: the host build of
        lumo-runner. A managed Node.js runtime runs its own bootstrap, which does what this does:
        with `AWS_LAMBDA_EXEC_WRAPPER` set, `exec <wrapper> <node> <options> <runtime client>`;
        the wrapper comes from the package the function was created or updated with (the zip the
        router kept), unpacked as the task root, its `bootstrap` replaced by the host build."""
        ex = self.pool.executor
        runtime = self.cfg.get("Runtime") or ""
        if not runtime.startswith("nodejs"):
            return [ex.runner_bin]
        self.task_root = os.path.join(self.work, "task")
        os.makedirs(self.task_root, exist_ok=True)
        package = ex.package_for(self.cfg.get("FunctionName", self.pool.name))
        if package is not None:
            with zipfile.ZipFile(io.BytesIO(package)) as zf:
                for info in zf.infolist():
                    target = os.path.realpath(os.path.join(self.task_root, info.filename))
                    if not target.startswith(os.path.realpath(self.task_root) + os.sep):
                        raise RuntimeError(f"the package has an unsafe entry {info.filename!r}")
                    zf.extract(info, self.task_root)
                    mode = (info.external_attr >> 16) & 0o777
                    if mode and not info.is_dir():
                        os.chmod(target, mode)
        bootstrap = os.path.join(self.task_root, "bootstrap")
        if os.path.lexists(bootstrap):
            os.remove(bootstrap)
        os.symlink(ex.runner_bin, bootstrap)
        variables = (self.cfg.get("Environment") or {}).get("Variables") or {}
        wrapper = variables.get("AWS_LAMBDA_EXEC_WRAPPER")
        node = ex.node_bin()
        if not wrapper:
            # Node's runtime client would look for a JavaScript handler named by `Handler`.
            msg = (f"Runtime.ImportModuleError: Error: Cannot find module '{self.cfg.get('Handler')}' "
                   f"(a {runtime} function without AWS_LAMBDA_EXEC_WRAPPER runs Node's runtime "
                   f"client, which the harness does not have)")
            return ["/bin/sh", "-c", 'echo "$0" >&2; exit 1', msg]
        if wrapper == LAMBDA_TASK_ROOT or wrapper.startswith(LAMBDA_TASK_ROOT + "/"):
            wrapper = self.task_root + wrapper[len(LAMBDA_TASK_ROOT):]
        if not os.path.isfile(wrapper):
            raise RuntimeError(f"AWS_LAMBDA_EXEC_WRAPPER {wrapper}: does not exist")
        if not os.access(wrapper, os.X_OK):
            raise RuntimeError(f"AWS_LAMBDA_EXEC_WRAPPER {wrapper}: is not an executable")
        return [wrapper, node, "--expose-gc", "--max-http-header-size", "81920",
                LAMBDA_NODE_RUNTIME_CLIENT]

    def _env(self) -> dict:
        cfg, ex = self.cfg, self.pool.executor
        arn = cfg.get("FunctionArn", "")
        parts = arn.split(":")
        region = parts[3] if len(parts) > 3 and parts[3] else DEFAULT_REGION
        name = cfg.get("FunctionName", self.pool.name)
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
               "LANG": "C.UTF-8", "TZ": ":UTC"}
        for k in ("RUST_LOG", "RUST_BACKTRACE", "LD_LIBRARY_PATH"):
            if k in os.environ:
                env[k] = os.environ[k]
        # lumo's runner keeps its bundle cache, work and logs in $LUMO_RUNNER_CACHE (default the
        # literal /tmp/lumo, which every instance and the host would share, and which a new
        # runner process clears): give each instance its own, as each Lambda sandbox has its /tmp
        env["LUMO_RUNNER_CACHE"] = os.path.join(self.tmp, "lumo")
        env.update(ex.extra_env)
        env.update((cfg.get("Environment") or {}).get("Variables") or {})
        # reserved variables, set as Lambda sets them (they win over the function's own)
        env.update({
            "AWS_LAMBDA_RUNTIME_API": f"{LOOPBACK}:{self.port}",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": cfg.get("Version", "$LATEST"),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.get("MemorySize", 128)),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "LAMBDA_TASK_ROOT": self.task_root, "LAMBDA_RUNTIME_DIR": self.work,
            "_HANDLER": cfg.get("Handler", "bootstrap"),
            "TMPDIR": self.tmp,
            # harness additions: keep anything the runner does with an AWS SDK on the emulators
            "AWS_ENDPOINT_URL": ex.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "LUMO_EMULATOR_INSTANCE": str(self.seq),
        })
        return env

    def _log_line(self, text: str) -> None:
        try:
            self.logf.write(f"[harness {iso_now()}] {text}\n".encode())
        except (OSError, ValueError):
            pass

    # -- called by the router's invoke thread
    def offer(self, inv: Invocation) -> bool:
        with self.cond:
            if self.dead or self.retiring or self.pending or self.current:
                return False
            self.pending = inv
            inv.instance = self
            self.cond.notify_all()
            return True

    def idle(self) -> bool:
        with self.cond:
            return not (self.dead or self.pending or self.current)

    # -- called by the runtime API handler
    def next_invocation(self) -> Invocation | None:
        with self.cond:
            while True:
                if self.dead:
                    return None
                if self.pending is not None:
                    inv = self.pending
                    self.pending = None
                    if inv.deliver(now_ms() + int(self.timeout_s * 1000)):
                        self.current = inv
                        try:
                            inv.log_offset = os.path.getsize(self.log_path)
                        except OSError:
                            inv.log_offset = 0
                        self._log_line(f"START RequestId: {inv.request_id} Version: "
                                       f"{self.cfg.get('Version', '$LATEST')}")
                        return inv
                    continue  # given up on by the invoker (init timeout): wait for another
                self.cond.wait()

    def current_invocation(self, req_id: str) -> Invocation | None:
        with self.cond:
            inv = self.current
            return inv if inv is not None and inv.request_id == req_id else None

    def complete(self, req_id: str, body: bytes, error: str | None) -> bool:
        with self.cond:
            inv = self.current
            if inv is None or inv.request_id != req_id:
                return False
            self.current = None
            self.served += 1
            retire = self.retiring
        if error is None and len(body) > MAX_RESPONSE_PAYLOAD:
            body = error_body("Function.ResponseSizeTooLarge",
                              f"Response payload size exceeded maximum allowed payload size "
                              f"({MAX_RESPONSE_PAYLOAD} bytes).")
            error = "Unhandled"
        ms = (time.monotonic() - inv.started) * 1000
        self._log_line(f"END RequestId: {req_id}")
        self._log_line(f"REPORT RequestId: {req_id} Duration: {ms:.2f} ms "
                       f"Status: {'error' if error else 'success'}")
        self._capture_tail(inv)
        inv.finish(body, error)
        if retire:
            self.kill("retired: the function's code or configuration changed")
        return True

    def init_error(self, body: bytes) -> None:
        with self.cond:
            invs = [i for i in (self.current, self.pending) if i is not None]
            self.current = self.pending = None
        self._log_line("INIT_ERROR " + body[:2000].decode("utf-8", "replace"))
        for inv in invs:
            self._capture_tail(inv)
            inv.finish(body, "Unhandled")
        self.kill("init error")

    def _capture_tail(self, inv: Invocation) -> None:
        if not inv.want_tail:
            return
        try:
            with open(self.log_path, "rb") as f:
                f.seek(inv.log_offset)
                inv.log_tail = f.read()[-4096:]
        except OSError:
            pass

    def kill(self, reason: str) -> None:
        with self.cond:
            if self.kill_reason is None:
                self.kill_reason = reason
            self.retiring = True
        self._log_line(f"KILL ({reason})")
        kill_tree(self.proc)

    def retire(self) -> None:
        with self.cond:
            self.retiring = True
            busy = self.pending is not None or self.current is not None
        if not busy:
            self.kill("retired: the function's code or configuration changed")

    def _watch(self) -> None:
        rc = self.proc.wait()
        spawner.forget(self.proc.pid)
        # the runtime is gone: so is its sandbox, with any task processes it left behind
        signal_tree(self.pid, signal.SIGKILL)
        with self.cond:
            self.dead = True
            cur, pend = self.current, self.pending
            self.current = self.pending = None
            reason = self.kill_reason
            self.cond.notify_all()
        status = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
        self._log_line(f"EXIT {status}" + (f" ({reason})" if reason else ""))
        if cur is not None:
            self._capture_tail(cur)
            cur.finish(error_body("Runtime.ExitError",
                                  f"RequestId: {cur.request_id} Error: Runtime exited with error: {status}"),
                       "Unhandled")
        if pend is not None:
            if self.served > 0 and reason is None:
                pend.bounce()  # a warm instance died between invocations: Lambda cold-starts
            else:
                pend.finish(error_body("Runtime.ExitError",
                                       f"RequestId: {pend.request_id} Error: Runtime exited "
                                       f"without providing a reason: {status}"), "Unhandled")
        self.pool.remove(self)
        threading.Thread(target=self._close, daemon=True).start()

    def _close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        try:
            self.logf.close()
        except OSError:
            pass


def config_fingerprint(cfg: dict) -> str:
    keys = ("CodeSha256", "LastModified", "Environment", "Timeout", "MemorySize", "Handler",
            "Runtime", "Version", "RevisionId", "Architectures", "Layers")
    return json.dumps({k: cfg.get(k) for k in keys}, sort_keys=True)


class FunctionPool:
    def __init__(self, executor: "Executor", key: str, name: str) -> None:
        self.executor = executor
        self.key = key
        self.name = name
        version = key.rsplit("#", 1)[-1]
        label = name if version == "$LATEST" else f"{name}@{version}"
        self.safe_name = re.sub(r"[^A-Za-z0-9_.@-]", "_", label)
        self.lock = threading.Lock()
        self.instances: list[Instance] = []
        self.fingerprint: str | None = None

    def configure(self, cfg: dict) -> None:
        fp = config_fingerprint(cfg)
        with self.lock:
            if fp == self.fingerprint:
                return
            old = list(self.instances) if self.fingerprint is not None else []
            self.fingerprint = fp
        for inst in old:
            inst.retire()

    def place(self, cfg: dict, inv: Invocation) -> Instance:
        with self.lock:
            for inst in self.instances:
                if inst.offer(inv):
                    return inst
            live = [i for i in self.instances if not i.dead]
            if len(live) >= self.executor.max_instances:
                raise Throttled()
            inst = Instance(self, next(self.executor.seq), cfg, inv)
            self.instances.append(inst)
            return inst

    def remove(self, inst: Instance) -> None:
        with self.lock:
            if inst in self.instances:
                self.instances.remove(inst)

    def snapshot(self) -> dict:
        with self.lock:
            insts = list(self.instances)
        return {"instances": [{"seq": i.seq, "pid": i.pid, "busy": not i.idle(),
                               "served": i.served, "retiring": i.retiring} for i in insts]}


class Executor:
    def __init__(self, runner_bin: str, log_dir: str, work_dir: str, max_instances: int,
                 init_timeout: float, extra_env: dict, node_override: str | None = None) -> None:
        self.runner_bin = runner_bin
        self.node_override = node_override
        # function name -> the zip of its last CreateFunction / UpdateFunctionCode (ZipFile)
        self.packages: dict[str, bytes] = {}
        self.log_dir = log_dir
        self.work_dir = work_dir
        self.max_instances = max_instances
        self.init_timeout = init_timeout
        self.extra_env = extra_env
        self.endpoint = ""
        self.pools: dict[str, FunctionPool] = {}
        self.lock = threading.Lock()
        self.seq = itertools.count(1)
        self.stream_limit = DEFAULT_STREAM_LIMIT

    def remember_package(self, name: str, zip_bytes: bytes) -> None:
        with self.lock:
            self.packages[name] = zip_bytes

    def package_for(self, name: str) -> bytes | None:
        with self.lock:
            return self.packages.get(name)

    def node_bin(self) -> str:
        """Node.js for managed Node.js runtimes: --node-bin / LUMO_EMULATOR_NODE, else where
        Lambda keeps it (/var/lang/bin/node), else `node` on PATH."""
        import shutil
        for candidate in (self.node_override, LAMBDA_NODE, shutil.which("node")):
            if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        raise RuntimeError("no Node.js for a managed Node.js runtime: pass --node-bin or set "
                           "LUMO_EMULATOR_NODE, or put `node` on PATH")

    def pool_for(self, cfg: dict) -> FunctionPool:
        key = f"{cfg.get('FunctionArn', cfg.get('FunctionName'))}#{cfg.get('Version', '$LATEST')}"
        with self.lock:
            pool = self.pools.get(key)
            if pool is None:
                pool = self.pools[key] = FunctionPool(self, key, cfg.get("FunctionName", "?"))
        return pool

    def invoke(self, cfg: dict, inv: Invocation) -> Invocation:
        pool = self.pool_for(cfg)
        pool.configure(cfg)
        for attempt in range(2):
            try:
                inst = pool.place(cfg, inv)
            except RuntimeError as e:  # the binary cannot be started
                inv.finish(error_body("Runtime.InvalidEntrypoint",
                                      f"RequestId: {inv.request_id} Error: {e}"), "Unhandled")
                return inv
            state = inv.wait_while("queued", time.monotonic() + self.init_timeout)
            if state == "queued":
                inv.finish(error_body("Runtime.InitTimeout",
                                      f"RequestId: {inv.request_id} Error: the runtime did not ask "
                                      f"for the invocation within {self.init_timeout:g} s"), "Unhandled")
                inst.kill("init timeout")
                return inv
            if state == "bounced":
                with inv.cond:
                    inv.state = "queued"
                continue
            if state == "delivered":
                deadline = time.monotonic() + max(0.0, inv.deadline_ms / 1000 - time.time())
                state = inv.wait_while("delivered", deadline + 0.05)
                if state == "delivered":
                    inst._capture_tail(inv)
                    inv.finish(error_body("Sandbox.Timedout",
                                          f"RequestId: {inv.request_id} Error: Task timed out "
                                          f"after {inst.timeout_s:.2f} seconds"), "Unhandled")
                    inst.kill("timeout")
            return inv
        inv.finish(error_body("Runtime.ExitError", f"RequestId: {inv.request_id} Error: "
                                                   "Runtime exited before taking the invocation"),
                   "Unhandled")
        return inv

    def reset(self) -> int:
        with self.lock:
            pools = list(self.pools.values())
        n = 0
        for pool in pools:
            with pool.lock:
                insts = list(pool.instances)
            for inst in insts:
                inst.kill("reset by /_harness/lambda/reset")
                n += 1
        return n

    def snapshot(self) -> dict:
        with self.lock:
            pools = dict(self.pools)
        return {"runnerBin": self.runner_bin,
                "functions": {k: p.snapshot() for k, p in pools.items()}}

    def shutdown(self) -> None:
        with self.lock:
            pools = list(self.pools.values())
        for pool in pools:
            with pool.lock:
                insts = list(pool.instances)
            for inst in insts:
                with inst.cond:
                    inst.kill_reason = inst.kill_reason or "harness shutdown"
                    inst.dead = True
                    inst.cond.notify_all()
                signal_tree(inst.pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# the router

COUNTER_NAMES = ("s3PutObject", "lambdaCreateFunction", "lambdaUpdateFunctionCode",
                 "lambdaUpdateFunctionConfiguration", "lambdaInvoke")


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters = {k: 0 for k in COUNTER_NAMES}
        self.invokes_by_function: dict[str, int] = {}
        self.requests = 0
        self.outage_until = 0.0
        # (method, path) -> how many more of those requests lose their response
        self.lost_responses: dict[tuple[str, str], int] = {}
        # the last 100 InvokeWithResponseStream calls: how much each function streamed
        self.streams: list[dict] = []

    def record_stream(self, function: str, inv: Invocation) -> None:
        with self.lock:
            self.streams.append({"function": function, "requestId": inv.request_id,
                                 "streamedBytes": inv.streamed_bytes,
                                 "overflow": inv.stream_overflow,
                                 "error": inv.result_error is not None})
            del self.streams[:-100]

    def take_lost_response(self, method: str, path: str) -> bool:
        with self.lock:
            left = self.lost_responses.get((method, path), 0)
            if left <= 0:
                return False
            self.lost_responses[(method, path)] = left - 1
            return True

    def count(self, name: str | None, function: str | None = None) -> None:
        with self.lock:
            self.requests += 1
            if name:
                self.counters[name] += 1
            if function:
                self.invokes_by_function[function] = self.invokes_by_function.get(function, 0) + 1

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.counters, lambdaInvokeByFunction=dict(self.invokes_by_function),
                        requests=self.requests)

    def reset(self) -> None:
        with self.lock:
            self.counters = {k: 0 for k in COUNTER_NAMES}
            self.invokes_by_function = {}
            self.requests = 0

    def outage(self) -> bool:
        with self.lock:
            return time.monotonic() < self.outage_until


# query keys that do not turn a PUT on an object key into another operation (presigning, SigV2
# and SigV4; the SDK's x-id=PutObject)
S3_OBJECT_PUT_QUERY_OK = {"x-id", "awsaccesskeyid", "signature", "expires"}


def parse_function_ref(segment: str) -> tuple[str, str | None]:
    """Invoke path segment (name, ARN or partial ARN, maybe URL-encoded) -> (name, qualifier)."""
    ref = urllib.parse.unquote(segment)
    parts = ref.split(":")
    if "function" in parts:
        i = parts.index("function")
        name = parts[i + 1] if i + 1 < len(parts) else ""
        qual = parts[i + 2] if i + 2 < len(parts) else None
        return name, qual
    if len(parts) == 2:
        return parts[0], parts[1]
    return ref, None


def classify(method: str, path: str, headers) -> tuple[str | None, str | None]:
    """-> (counter name, invoked function segment for Invoke)."""
    split = urllib.parse.urlsplit(path)
    p = split.path
    if p.startswith(STREAMING_PREFIX + "/"):
        m = re.fullmatch(r"/([^/]+)/response-streaming-invocations/?", p[len(STREAMING_PREFIX):])
        if m and method == "POST":
            return "lambdaInvoke", m.group(1)
        return None, None
    if p == LAMBDA_PREFIX or p.startswith(LAMBDA_PREFIX + "/"):
        rest = p[len(LAMBDA_PREFIX):]
        if method == "POST" and rest in ("", "/"):
            return "lambdaCreateFunction", None
        m = re.fullmatch(r"/([^/]+)/(code|configuration|invocations)/?", rest)
        if m:
            op = {("PUT", "code"): "lambdaUpdateFunctionCode",
                  ("PUT", "configuration"): "lambdaUpdateFunctionConfiguration",
                  ("POST", "invocations"): "lambdaInvoke"}.get((method, m.group(2)))
            return op, (m.group(1) if op == "lambdaInvoke" else None)
        return None, None
    if method == "PUT":
        segs = p.split("/", 2)  # "", bucket, key
        if len(segs) == 3 and segs[1] and segs[2] and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", segs[1]):
            query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
            other = [k for k in query if not k.lower().startswith("x-amz-")
                     and k.lower() not in S3_OBJECT_PUT_QUERY_OK]
            xid = query.get("x-id", ["PutObject"])[0]
            if not other and xid == "PutObject" and not headers.get("x-amz-copy-source"):
                return "s3PutObject", None
    return None, None


class RouterServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True


class Router:
    def __init__(self, state: State, moto: Moto, executor: Executor, log_dir: str) -> None:
        self.state = state
        self.moto = moto
        self.executor = executor
        self.access = open(os.path.join(log_dir, "router.log"), "a", buffering=1, encoding="utf-8")
        self.access_lock = threading.Lock()
        # DynamoDB applies each request atomically; moto's threaded server does not: a failed
        # TransactWriteItems is rolled back by restoring a copy of the table taken when it
        # began, erasing whatever other requests wrote meanwhile (another deploy's lock, say).
        # Its requests are served one at a time, so the environment lock holds as on AWS.
        self.dynamodb_lock = threading.Lock()
        self.server: RouterServer | None = None

    def start(self, port: int) -> int:
        router = self

        class Handler(RouterHandler):
            pass

        Handler.router = router
        self.server = RouterServer((LOOPBACK, port), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True, name="router").start()
        return self.server.server_address[1]

    def access_log(self, line: str) -> None:
        with self.access_lock:
            try:
                self.access.write(f"{iso_now()} {line}\n")
            except (OSError, ValueError):
                pass

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


class RouterHandler(NoDelayHandler):
    server_version = "lumo-emulator-router"
    router: Router

    def log_message(self, fmt, *args):
        pass

    def log_request(self, code="-", size="-"):
        pass

    # every method goes through dispatch
    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    def dispatch(self) -> None:
        t0 = time.monotonic()
        status = "-"
        try:
            path = urllib.parse.urlsplit(self.path).path
            if path == "/_harness" or path.startswith("/_harness/"):
                status = self.harness_api(path)
                return
            if self.router.state.outage():
                status = "outage-closed"
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            counter, fn_segment = classify(self.command, self.path, self.headers)
            if fn_segment is not None:
                name, qualifier = parse_function_ref(fn_segment)
                if name.endswith(RUNNER_SUFFIX):
                    self.router.state.count(counter, name)
                    status = self.invoke(fn_segment, name, qualifier,
                                         streaming=path.startswith(STREAMING_PREFIX + "/"))
                    return
            self.router.state.count(counter, None)
            if self.router.state.take_lost_response(self.command, path):
                status = self.lose_response(counter)
                return
            if (self.headers.get("X-Amz-Target") or "").startswith("DynamoDB_"):
                with self.router.dynamodb_lock:
                    status = self.proxy_to_moto(counter)
            else:
                status = self.proxy_to_moto(counter)
        except (BrokenPipeError, ConnectionError) as e:
            status = f"client-gone ({e.__class__.__name__})"
            self.close_connection = True
        except Exception as e:  # never let the router thread die silently
            status = f"router-error {e!r}"
            self.router.access_log(traceback.format_exc())
            self.close_connection = True
            try:
                self.send_plain(502, error_body("HarnessRouterError", repr(e)))
            except OSError:
                pass
        finally:
            self.router.access_log(f"{self.command} {self.path} -> {status} "
                                   f"{(time.monotonic() - t0) * 1000:.1f}ms")

    def send_plain(self, status: int, body: bytes, headers: dict | None = None,
                   content_type: str = "application/json") -> int:
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    # ---- /_harness
    def harness_api(self, path: str) -> int:
        body = BodyReader(self.rfile, self.headers).read_all()
        state, method = self.router.state, self.command
        try:
            args = json.loads(body) if body.strip() else {}
        except ValueError:
            return self.send_plain(400, error_body("BadRequest", "body is not JSON"))
        if path == "/_harness/counters" and method == "GET":
            return self.send_plain(200, json_bytes(state.snapshot()))
        if path == "/_harness/counters/reset" and method == "POST":
            state.reset()
            return self.send_plain(200, json_bytes(state.snapshot()))
        if path == "/_harness/outage" and method == "POST":
            try:
                seconds = float(args.get("seconds", 0))
            except (TypeError, ValueError, AttributeError):
                return self.send_plain(400, error_body("BadRequest", 'expected {"seconds": N}'))
            with state.lock:
                state.outage_until = time.monotonic() + max(0.0, seconds)
            return self.send_plain(200, json_bytes({"outageSeconds": max(0.0, seconds)}))
        if path == "/_harness/lose-response" and method == "POST":
            try:
                key = (str(args["method"]).upper(), str(args["path"]))
                count = int(args.get("count", 1))
            except (KeyError, TypeError, ValueError, AttributeError):
                return self.send_plain(400, error_body(
                    "BadRequest", 'expected {"method": M, "path": P, "count": N}'))
            with state.lock:
                state.lost_responses[key] = max(0, count)
            return self.send_plain(200, json_bytes({"method": key[0], "path": key[1],
                                                    "count": max(0, count)}))
        if path == "/_harness/health" and method == "GET":
            ok = self.router.moto.exited is None
            return self.send_plain(200 if ok else 503, json_bytes(
                {"ok": ok, "motoExited": self.router.moto.exited, "outage": state.outage()}))
        if path == "/_harness/iam/role" and method == "POST":
            name = (args.get("name") if isinstance(args, dict) else None) or DEFAULT_ROLE_NAME
            return self.send_plain(200, json_bytes({"arn": self.router.moto.ensure_role(name)}))
        if path == "/_harness/lambda" and method == "GET":
            return self.send_plain(200, json_bytes(self.router.executor.snapshot()))
        if path == "/_harness/lambda/streams" and method == "GET":
            with state.lock:
                return self.send_plain(200, json_bytes({"streamLimit": self.router.executor.stream_limit,
                                                        "streams": list(state.streams)}))
        if path == "/_harness/lambda/reset" and method == "POST":
            return self.send_plain(200, json_bytes({"killed": self.router.executor.reset()}))
        return self.send_plain(404, error_body("NotFound", f"no harness endpoint {method} {path}"))

    def lose_response(self, counter: str | None) -> str:
        """The request reaches moto and takes effect; its answer is dropped with the connection
        (what a client sees when the network fails after the server acted)."""
        client = self.wfile
        self.wfile = io.BytesIO()
        try:
            status = self.proxy_to_moto(counter)
        finally:
            self.wfile = client
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return f"response-lost (moto said {status})"

    # ---- everything else: moto, byte for byte
    def proxy_to_moto(self, counter: str | None) -> str:
        moto = self.router.moto
        conn = None
        reader = BodyReader(self.rfile, self.headers)
        if moto.exited is not None:
            reader.drain()
            return str(self.send_plain(502, error_body(
                "HarnessMotoDown", f"moto_server exited with {moto.exited}; see {moto.log_path}")))
        form_put = counter == "s3PutObject" and (self.headers.get("Content-Type") or "").lower() \
            .startswith("application/x-www-form-urlencoded")
        # The function package is kept for the executor (a managed runtime's exec wrapper comes
        # from it), so the body is read whole here.
        body = None
        if counter in ("lambdaCreateFunction", "lambdaUpdateFunctionCode"):
            body = reader.read_all()
            self.keep_package(body)
        try:
            conn = moto.connection(None)
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    if form_put and k.lower() == "content-type":
                        # moto (werkzeug) parses a form-encoded body as a form and stores an
                        # EMPTY object; real S3 stores the bytes. curl -d and urllib send this
                        # type by default, so the router stores the object as octet-stream.
                        v = "application/octet-stream"
                    conn.putheader(k, v)
            if reader.chunked or body is not None:
                data = body if body is not None else reader.read_all()  # moto: a known length
                conn.putheader("Content-Length", str(len(data)))
                conn.endheaders()
                if data:
                    conn.send(data)
            else:
                if "Content-Length" in self.headers:
                    conn.putheader("Content-Length", str(reader.remaining))
                conn.endheaders()
                while True:
                    piece = reader.read()
                    if not piece:
                        break
                    conn.send(piece)
            resp = conn.getresponse()
        except OSError as e:
            if conn is not None:
                conn.close()
            self.close_connection = True
            return str(self.send_plain(502, error_body("HarnessMotoUnreachable", repr(e))))
        try:
            self.send_response_only(resp.status, resp.reason)
            length = resp.getheader("Content-Length")
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP:
                    self.send_header(k, v)
            no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
            if no_body or length is not None:
                self.end_headers()
                while True:
                    piece = resp.read(65536)
                    if not piece:
                        break
                    self.wfile.write(piece)
            else:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                while True:
                    piece = resp.read(65536)
                    if not piece:
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            return str(resp.status)
        finally:
            conn.close()

    def keep_package(self, body: bytes) -> None:
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            return
        zip_b64 = doc.get("ZipFile") or (doc.get("Code") or {}).get("ZipFile")
        if not zip_b64:
            return
        m = re.fullmatch(rf"{LAMBDA_PREFIX}/([^/]+)/code/?", urllib.parse.urlsplit(self.path).path)
        name = parse_function_ref(m.group(1))[0] if m else doc.get("FunctionName", "")
        try:
            self.router.executor.remember_package(name, base64.b64decode(zip_b64))
        except ValueError:
            pass

    # ---- Invoke of a *-lumo-runner function: the built-in executor
    def invoke(self, segment: str, name: str, qualifier: str | None, streaming: bool = False) -> str:
        reader = BodyReader(self.rfile, self.headers)
        try:
            payload = reader.read_all(limit=MAX_REQUEST_PAYLOAD)
        except OverflowError as e:
            return str(self.send_plain(413, json_bytes({
                "Type": "User", "message": f"{e.args[0]} byte payload is too large for the "
                                          f"RequestResponse invocation type ({MAX_REQUEST_PAYLOAD})"}),
                {"x-amzn-ErrorType": "RequestTooLargeException"}))
        moto = self.router.moto
        if moto.exited is not None:
            return str(self.send_plain(502, error_body(
                "HarnessMotoDown", f"moto_server exited with {moto.exited}; see {moto.log_path}")))
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        qualifier = (query.get("Qualifier") or [qualifier])[0]
        lookup = f"{LAMBDA_PREFIX}/{segment}"
        if qualifier:
            lookup += "?Qualifier=" + urllib.parse.quote(qualifier, safe="")
        status, headers, body = moto.request("GET", lookup, headers={
            "Authorization": scoped_auth(self.headers.get("Authorization"), "lambda"),
            "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())})
        if status != 200:  # e.g. 404 ResourceNotFoundException, exactly as moto words it
            hdrs = {k: v for k, v in headers if k.lower() not in HOP_BY_HOP
                    and k.lower() not in ("content-length", "content-type", "date")}
            return str(self.send_plain(status, body, hdrs))
        cfg = json.loads(body).get("Configuration", {})
        invoked_arn = cfg.get("FunctionArn", "")
        if qualifier and not invoked_arn.endswith(":" + qualifier):
            invoked_arn += ":" + qualifier
        inv_type = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        request_id = str(uuid.uuid4())
        if inv_type == "DryRun":
            return str(self.send_plain(204, b"", {"x-amzn-RequestId": request_id}))
        client_context = self.headers.get("X-Amz-Client-Context")
        if client_context:
            try:
                client_context = base64.b64decode(client_context).decode()
            except ValueError:
                pass
        inv = Invocation(request_id, payload, client_context, invoked_arn,
                         self.headers.get("X-Amz-Log-Type") == "Tail")
        executor = self.router.executor
        if streaming:
            return self.relay_stream(cfg, inv, name)
        if inv_type == "Event":
            threading.Thread(target=self._invoke_quietly, args=(cfg, inv), daemon=True).start()
            return str(self.send_plain(202, b"", {"x-amzn-RequestId": request_id}))
        try:
            executor.invoke(cfg, inv)
        except Throttled:
            return str(self.send_plain(429, json_bytes({
                "Type": "User", "message": "Rate Exceeded.", "Reason": "ConcurrentInvocationLimitExceeded"}),
                {"x-amzn-ErrorType": "TooManyRequestsException", "x-amzn-RequestId": request_id}))
        headers = {"x-amzn-RequestId": request_id,
                   "X-Amz-Executed-Version": cfg.get("Version", "$LATEST"),
                   "x-amzn-Remapped-Content-Length": "0"}
        if inv.result_error:
            headers["X-Amz-Function-Error"] = inv.result_error
        if inv.want_tail:
            headers["X-Amz-Log-Result"] = base64.b64encode(inv.log_tail).decode()
        self.send_plain(200, inv.body, headers)
        return f"200 invoke {name} {'error ' + inv.result_error if inv.result_error else 'ok'}"

    def relay_stream(self, cfg: dict, inv: Invocation, name: str) -> str:
        """InvokeWithResponseStream: HTTP 200 with an event stream, a `PayloadChunk` for each
        piece of the response as the function streams it (relayed at once, never gathered), then
        `InvokeComplete`, with `ErrorCode`/`ErrorDetails` when the function failed (a failure
        is never an HTTP error once the function ran) and `LogResult` for `X-Amz-Log-Type: Tail`.
        A buffered response (a function that does not stream) arrives as one chunk at the end."""
        executor = self.router.executor
        events: queue.Queue = queue.Queue()
        inv.listener = events
        inv.stream_limit = executor.stream_limit

        def run() -> None:
            try:
                executor.invoke(cfg, inv)
            except Throttled:
                events.put(("throttled",))
                return
            events.put(("end",))

        threading.Thread(target=run, daemon=True, name=f"stream-{inv.request_id[:8]}").start()
        started, chunks = False, 0

        def send(message: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(message), message))

        try:
            while True:
                event = events.get()
                if event[0] == "throttled":
                    return str(self.send_plain(429, json_bytes({
                        "Type": "User", "message": "Rate Exceeded.",
                        "Reason": "ConcurrentInvocationLimitExceeded"}),
                        {"x-amzn-ErrorType": "TooManyRequestsException",
                         "x-amzn-RequestId": inv.request_id}))
                if not started:
                    started = True
                    self.send_response_only(200)
                    self.send_header("Date", self.date_time_string())
                    self.send_header("Content-Type", "application/vnd.amazon.eventstream")
                    self.send_header("x-amzn-RequestId", inv.request_id)
                    self.send_header("X-Amz-Executed-Version", cfg.get("Version", "$LATEST"))
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                if event[0] == "end":
                    break
                if event[1]:
                    send(payload_chunk_event(event[1]))
                    chunks += 1
            if inv.result_error is None and chunks == 0 and inv.body:
                for i in range(0, len(inv.body), 65536):
                    send(payload_chunk_event(inv.body[i:i + 65536]))
            complete = {}
            if inv.result_error:
                try:
                    err = json.loads(inv.body)
                except ValueError:
                    err = {}
                err = err if isinstance(err, dict) else {}
                complete["ErrorCode"] = str(err.get("errorType") or inv.result_error)
                complete["ErrorDetails"] = str(err.get("errorMessage") or "")
            if inv.want_tail:
                complete["LogResult"] = base64.b64encode(inv.log_tail).decode()
            send(invoke_complete_event(complete))
            self.wfile.write(b"0\r\n\r\n")
        finally:
            with inv.cond:
                inv.listener = None  # a caller that went away: the rest is dropped
            self.router.state.record_stream(name, inv)
        return (f"200 stream {name} {inv.streamed_bytes} bytes"
                f"{' overflow' if inv.stream_overflow else ''}"
                f"{' error ' + inv.result_error if inv.result_error else ' ok'}")

    def _invoke_quietly(self, cfg: dict, inv: Invocation) -> None:
        try:
            self.router.executor.invoke(cfg, inv)
        except Throttled:
            self.router.access_log(f"async invoke {inv.request_id} throttled")


# --------------------------------------------------------------------------------------------
# the runner binary

def build_runner(workspace: str, log_dir: str, package: str | None, abort) -> str:
    cargo = os.environ.get("CARGO", "cargo")
    argv = [cargo, "build", "--bin", RUNNER_BIN_NAME, "--message-format=json-render-diagnostics"]
    if package:
        argv += ["-p", package]
    build_log = os.path.join(log_dir, "cargo-build.log")
    log(f"building {RUNNER_BIN_NAME} in {workspace} ({' '.join(argv)}; log {build_log})")
    t0 = time.monotonic()
    with open(build_log, "ab") as errf:
        proc = spawner.spawn(argv, cwd=workspace, stdout=subprocess.PIPE, stderr=errf)
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
        reader.start()
        while proc.poll() is None:
            if abort():
                kill_tree(proc, grace=1.0)
                spawner.forget(proc.pid)
                raise RuntimeError("stopped while building the runner")
            time.sleep(0.2)
        reader.join()
        rc = proc.returncode
        spawner.forget(proc.pid)
        out = b"".join(chunks)
    exe = None
    for line in out.decode("utf-8", "replace").splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if (msg.get("reason") == "compiler-artifact" and msg.get("executable")
                and msg.get("target", {}).get("name") == RUNNER_BIN_NAME):
            exe = msg["executable"]
    if rc != 0 or not exe:
        try:
            with open(build_log, encoding="utf-8", errors="replace") as f:
                tail = "".join(f.readlines()[-40:])
        except OSError:
            tail = ""
        raise RuntimeError(f"`{' '.join(argv)}` in {workspace} failed (exit {rc}); "
                           f"no {RUNNER_BIN_NAME} executable. Last lines of {build_log}:\n{tail}")
    log(f"built {exe} in {time.monotonic() - t0:.1f} s")
    return exe


# --------------------------------------------------------------------------------------------
# main

shutting_down = threading.Event()


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", required=True, help="Cargo workspace that has the lumo-runner binary")
    ap.add_argument("--log-dir", required=True, help="where every child's log goes (created)")
    ap.add_argument("--parent-pid", type=int, help="exit (cleaning up) when this process is gone")
    ap.add_argument("--port", type=int, default=0, help="router port (0: a free one)")
    ap.add_argument("--runner-bin", default=os.environ.get("LUMO_RUNNER_BIN"),
                    help="prebuilt lumo-runner to run (default: `cargo build --bin lumo-runner` "
                         "in the workspace and use what it reports); env LUMO_RUNNER_BIN")
    ap.add_argument("--runner-package", help="cargo -p for the build (default: let cargo find the bin)")
    ap.add_argument("--lambda-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for every function instance (repeatable)")
    ap.add_argument("--node-bin", default=os.environ.get("LUMO_EMULATOR_NODE"),
                    help="Node.js for functions on a managed Node.js runtime (default: "
                         f"{LAMBDA_NODE} if present, else `node` on PATH); env LUMO_EMULATOR_NODE")
    ap.add_argument("--stream-limit", type=int, default=DEFAULT_STREAM_LIMIT, metavar="BYTES",
                    help="most bytes a function may stream to an InvokeWithResponseStream caller "
                         f"(default {DEFAULT_STREAM_LIMIT}, Lambda's 20 MB soft limit)")
    ap.add_argument("--max-instances", type=int, default=10,
                    help="concurrent instances per function before Invoke answers 429 (default 10)")
    ap.add_argument("--init-timeout", type=float, default=10.0,
                    help="seconds an instance may take to ask for its first event (default 10)")
    ap.add_argument("--startup-timeout", type=float, default=60.0,
                    help="seconds moto may take to come up (default 60)")
    ap.add_argument("--role-name", default=DEFAULT_ROLE_NAME,
                    help=f"IAM role created in moto at start (default {DEFAULT_ROLE_NAME})")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    import importlib.util
    if importlib.util.find_spec("moto") is None:  # not the emulator venv
        sys.stderr.write(f"lumo-emulators: {sys.executable} has no moto installed: {SETUP_HINT}\n")
        return 2
    if not os.path.isdir(args.workspace):
        sys.stderr.write(f"lumo-emulators: --workspace {args.workspace} is not a directory\n")
        return 2
    workspace = os.path.abspath(args.workspace)
    log_dir = os.path.abspath(args.log_dir)
    os.makedirs(log_dir, exist_ok=True)
    log.open(os.path.join(log_dir, "harness.log"))
    work_dir = os.path.join(log_dir, "lambda-work")  # each instance's task root and TMPDIR
    os.makedirs(work_dir, exist_ok=True)
    extra_env = {}
    for kv in args.lambda_env:
        k, sep, v = kv.partition("=")
        if not sep:
            sys.stderr.write(f"lumo-emulators: --lambda-env {kv!r} is not KEY=VALUE\n")
            return 2
        extra_env[k] = v

    lc = libc()
    if lc:
        lc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    parent_start = process_start_time(args.parent_pid) if args.parent_pid else None
    if args.parent_pid and parent_start is None:
        sys.stderr.write(f"lumo-emulators: --parent-pid {args.parent_pid} is not running\n")
        return 2

    def parent_gone() -> bool:
        return bool(args.parent_pid) and process_start_time(args.parent_pid) != parent_start

    t0 = time.monotonic()
    moto = Moto(venv_bin, log_dir)
    router = None
    executor = None
    try:
        log(f"starting moto_server ({moto.exe}), logs in {log_dir}")
        moto.start()
        runner_bin = os.path.abspath(args.runner_bin) if args.runner_bin else \
            build_runner(workspace, log_dir, args.runner_package, lambda: stop.is_set() or parent_gone())
        if not os.access(runner_bin, os.X_OK):
            raise RuntimeError(f"runner binary {runner_bin} is missing or not executable")
        if stop.is_set() or parent_gone():
            raise RuntimeError("stopped during startup")
        moto.wait_ready(args.startup_timeout)
        role_arn = moto.ensure_role(args.role_name)
        executor = Executor(runner_bin, log_dir, work_dir, args.max_instances, args.init_timeout,
                            extra_env, args.node_bin)
        executor.stream_limit = args.stream_limit
        router = Router(State(), moto, executor, log_dir)
        port = router.start(args.port)
        endpoint = f"http://{LOOPBACK}:{port}"
        executor.endpoint = endpoint
        ready = {"endpoint": endpoint,
                 "pids": {"harness": os.getpid(), "router": os.getpid(), "moto": moto.proc.pid},
                 "logDir": log_dir,
                 "runnerRoleArn": role_arn,
                 "runnerBin": runner_bin,
                 "motoEndpoint": f"http://{LOOPBACK}:{moto.port}",
                 "startupSeconds": round(time.monotonic() - t0, 3)}
        log(f"ready in {time.monotonic() - t0:.2f} s: {json.dumps(ready)}")
        log.to_stderr = False
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
    except BaseException as e:  # noqa: BLE001 - report, clean up, exit non-zero
        msg = str(e) if isinstance(e, (RuntimeError, SystemExit)) else traceback.format_exc()
        log(f"startup failed: {msg}")
        cleanup(moto, router, executor)
        return 1

    try:
        while not stop.wait(0.5):
            if parent_gone():
                log(f"parent {args.parent_pid} is gone: shutting down")
                break
            reap_adopted_orphans()
    finally:
        cleanup(moto, router, executor)
    log("stopped")
    return 0


def cleanup(moto: Moto, router: Router | None, executor: Executor | None) -> None:
    shutting_down.set()
    if executor is not None:
        executor.shutdown()
    if moto.proc is not None:
        kill_tree(moto.proc, grace=1.0)
    # anything else still below us (task processes the runner detached, adopted orphans)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = descendants(os.getpid())
        for pid in left:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if not left:
            break
        time.sleep(0.3)
    reap_adopted_orphans()
    if router is not None:
        try:
            router.stop()
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    sys.exit(main())
