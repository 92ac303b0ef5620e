#!/usr/bin/env python3
"""End-to-end proof of the emulator harness, with boto3 (it comes with moto).

    "$(tests/emulators/setup)/bin/python" tests/emulators/selftest.py --workspace DIR

DIR is any Cargo workspace with a `lumo-runner` lambda_runtime binary. Checks that need a
controllable function (handler error, sleep, timeout, crash, concurrency, env, deadline) run when
that binary speaks the selftest's echo protocol (README.md, "Echo protocol"); with another runner
(lumo's real one) they are reported as skipped and only the runner-agnostic checks run.
Prints one line per check and closes with "N passed, N failed, N skipped"; exit 1 on a failure.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import http.client
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(HERE, "harness.py")

try:
    import boto3
    import botocore.exceptions
    from botocore.config import Config
except ImportError:
    sys.stderr.write(f"selftest: {sys.executable} has no boto3: run tests/emulators/setup and use "
                     "<venv>/bin/python\n")
    sys.exit(2)

os.environ.update(AWS_EC2_METADATA_DISABLED="true", AWS_ACCESS_KEY_ID="testing",
                  AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
    os.environ.pop(var, None)

RESULTS = {"passed": 0, "failed": 0, "skipped": 0}
TIMINGS: dict[str, str] = {}
FN = "selftest-dev-lumo-runner"


def check(name: str):
    """Decorator-ish runner: check(name)(fn) runs fn, records pass/fail/skip."""
    def run(fn):
        t0 = time.monotonic()
        try:
            note = fn()
        except Skip as e:
            RESULTS["skipped"] += 1
            print(f"skip - {name}: {e}", flush=True)
            return None
        except Exception as e:  # noqa: BLE001
            RESULTS["failed"] += 1
            print(f"FAIL - {name}: {e.__class__.__name__}: {e}", flush=True)
            return None
        RESULTS["passed"] += 1
        extra = f" ({note})" if note else ""
        print(f"ok   - {name} [{(time.monotonic() - t0) * 1000:.0f} ms]{extra}", flush=True)
        return True
    return run


class Skip(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def start_harness(args, log_dir: str, parent_pid: int | None, timeout: float = 900,
                  extra: list[str] | None = None, runner_bin: str | None = None):
    argv = [sys.executable, HARNESS, "--workspace", args.workspace, "--log-dir", log_dir]
    if parent_pid:
        argv += ["--parent-pid", str(parent_pid)]
    if runner_bin or args.runner_bin:
        argv += ["--runner-bin", runner_bin or args.runner_bin]
    argv += extra or []
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    line = proc.stdout.readline()  # the harness prints exactly one line, when ready
    if not line:
        proc.wait(timeout)
        raise RuntimeError(f"harness exited with {proc.returncode} before ready; see {log_dir}/harness.log")
    info = json.loads(line)
    info["_startup"] = time.monotonic() - t0
    return proc, info


def proc_tree(root: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    data = f.read()
            except OSError:
                continue
            ppid = int(data[data.rfind(")") + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(entry))
    out, todo = {root}, [root]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(")") + 2:].split()[0] not in ("Z", "X")


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = {p for p in pids if alive(p)}
        if not left:
            return set()
        time.sleep(0.1)
    return {p for p in pids if alive(p)}


def describe(pids) -> str:
    out = []
    for p in sorted(pids):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{p}:{cmd[:80]}")
        except OSError:
            out.append(str(p))
    return ", ".join(out)


def clients(endpoint: str, attempts: int = 1):
    cfg = Config(retries={"max_attempts": attempts, "mode": "standard"}, signature_version="s3v4",
                 s3={"addressing_style": "path"}, read_timeout=900, connect_timeout=5)
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", config=cfg)
    return (boto3.client("s3", **kw), boto3.client("dynamodb", **kw), boto3.client("lambda", **kw),
            boto3.client("iam", **kw), boto3.client("sts", **kw))


def harness_call(endpoint: str, method: str, path: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(endpoint + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def function_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n# the harness runs the workspace's lumo-runner instead\n")
    return buf.getvalue()


# A runtime that streams its responses as lambda_runtime's StreamResponse does: POST
# .../response with `Lambda-Runtime-Function-Response-Mode: streaming` and a chunked body, an
# error after the stream began in the trailers. Per event: `chunks` [[text, delayMs], ...]
# written one by one; then `trailerError` (type, message) in the trailers; `fail` posts to
# .../error instead; `buffered` posts an ordinary response.
STREAMING_RUNTIME = r"""
import base64, http.client, json, os, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
while True:
    conn = http.client.HTTPConnection(host, int(port))
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse()
    event = json.loads(r.read())
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    base = f"/2018-06-01/runtime/invocation/{rid}"
    if "fail" in event:
        conn.request("POST", base + "/error", body=json.dumps({"errorType": "Selftest.Failed", "errorMessage": event["fail"]}))
        conn.getresponse().read()
        continue
    if "buffered" in event:
        conn.request("POST", base + "/response", body=json.dumps({"buffered": event["buffered"]}))
        conn.getresponse().read()
        continue
    conn.putrequest("POST", base + "/response")
    conn.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Trailer", "Lambda-Runtime-Function-Error-Type")
    conn.putheader("Trailer", "Lambda-Runtime-Function-Error-Body")
    conn.endheaders()
    for text, delay in event.get("chunks", []):
        time.sleep(delay / 1000)
        data = text.encode()
        conn.send(b"%x\r\n%s\r\n" % (len(data), data))
    trailers = b""
    if "trailerError" in event:
        etype, msg = event["trailerError"]
        trailers = (f"Lambda-Runtime-Function-Error-Type: {etype}\r\n"
                    f"Lambda-Runtime-Function-Error-Body: {base64.b64encode(msg.encode()).decode()}\r\n").encode()
    conn.send(b"0\r\n" + trailers + b"\r\n")
    conn.getresponse().read()
"""


def stream_invoke(lam, payload, fn, **kw):
    """InvokeWithResponseStream through botocore's own event-stream decoder (it checks both CRCs):
    -> (list of (seconds since the call, chunk bytes), InvokeComplete dict, response)."""
    t0 = time.monotonic()
    r = lam.invoke_with_response_stream(FunctionName=fn, Payload=json.dumps(payload).encode(), **kw)
    chunks, complete = [], None
    for event in r["EventStream"]:
        if "PayloadChunk" in event:
            chunks.append((time.monotonic() - t0, event["PayloadChunk"]["Payload"]))
        elif "InvokeComplete" in event:
            complete = event["InvokeComplete"]
    return chunks, complete, r


def invoke(lam, payload, fn=FN, **kw):
    t0 = time.monotonic()
    r = lam.invoke(FunctionName=fn, Payload=json.dumps(payload).encode(), **kw)
    body = r["Payload"].read()
    r["_elapsed"] = time.monotonic() - t0
    r["_body"] = body
    try:
        r["_json"] = json.loads(body) if body else None
    except ValueError:
        r["_json"] = None
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--runner-bin", help="prebuilt lumo-runner (passed to harness.py)")
    ap.add_argument("--log-dir", help="default: a temporary directory, removed when all passed")
    args = ap.parse_args()
    args.workspace = os.path.abspath(args.workspace)
    base = args.log_dir or tempfile.mkdtemp(prefix="lumo-emulators-selftest-")
    os.makedirs(base, exist_ok=True)
    print(f"# logs in {base}", flush=True)

    proc, info = start_harness(args, os.path.join(base, "main"), os.getpid())
    ep = info["endpoint"]
    TIMINGS["harness startup (process start to JSON line)"] = f"{info['_startup']:.2f} s"
    print(f"# harness ready: {json.dumps({k: v for k, v in info.items() if not k.startswith('_')})}", flush=True)
    s3, ddb, lam, iam, sts = clients(ep)
    state = {"echo": False}

    # ------------------------------------------------------------------ the JSON line
    @check("ready line has endpoint, pids, logDir on loopback")
    def _():
        expect(ep.startswith("http://127.0.0.1:"), ep)
        expect({"harness", "moto"} <= set(info["pids"]), info["pids"])
        expect(os.path.isdir(info["logDir"]), info["logDir"])
        expect(os.path.exists(os.path.join(info["logDir"], "moto.log")), "no moto.log")

    # ------------------------------------------------------------------ S3
    bucket = "lumo-selftest"

    @check("S3 create bucket, PutObject, HeadObject, GetObject")
    def _():
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="p/bundles/a.zip", Body=b"hello bundle")
        h = s3.head_object(Bucket=bucket, Key="p/bundles/a.zip")
        expect(h["ContentLength"] == 12, h)
        expect(s3.get_object(Bucket=bucket, Key="p/bundles/a.zip")["Body"].read() == b"hello bundle", "body")
        try:
            s3.head_object(Bucket=bucket, Key="missing")
            raise AssertionError("HeadObject of a missing key succeeded")
        except botocore.exceptions.ClientError as e:
            expect(e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response)

    @check("S3 presigned GET through the router")
    def _():
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p/bundles/a.zip"}, ExpiresIn=300)
        expect(url.startswith(ep), url)
        with urllib.request.urlopen(url, timeout=30) as r:
            expect(r.read() == b"hello bundle", "presigned GET body")

    @check("S3 presigned PUT through the router (Content-Length, form content type, chunked)")
    def _():
        url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p/logs/run1.log"}, ExpiresIn=300)
        expect("X-Amz-Signature=" in url, url)
        # urllib sends Content-Type: application/x-www-form-urlencoded, which moto alone would
        # store as an empty object
        req = urllib.request.Request(url, data=b"log line 1\n", method="PUT")
        with urllib.request.urlopen(req, timeout=30) as r:
            expect(r.status == 200, r.status)
        expect(s3.get_object(Bucket=bucket, Key="p/logs/run1.log")["Body"].read() == b"log line 1\n", "PUT body")
        url2 = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p/logs/run2.log"}, ExpiresIn=300)
        u = urllib.parse.urlsplit(url2)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.request("PUT", f"{u.path}?{u.query}", body=iter([b"chunk one, ", b"chunk two"]), encode_chunked=True)
        r = conn.getresponse()
        r.read()
        conn.close()
        expect(r.status == 200, f"chunked PUT: {r.status}")
        got = s3.get_object(Bucket=bucket, Key="p/logs/run2.log")["Body"].read()
        expect(got == b"chunk one, chunk two", got)

    @check("S3 8 MiB object round trip through the router")
    def _():
        data = os.urandom(8 * 1024 * 1024)
        s3.put_object(Bucket=bucket, Key="p/big.bin", Body=data)
        expect(s3.get_object(Bucket=bucket, Key="p/big.bin")["Body"].read() == data, "8 MiB body differs")

    # ------------------------------------------------------------------ DynamoDB
    table = "lumo-selftest"

    @check("DynamoDB table with GSI, conditional put, Query on table and GSI")
    def _():
        ddb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gsi1pk", "gsi1sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[{"IndexName": "gsi1", "Projection": {"ProjectionType": "ALL"},
                                     "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                                                   {"AttributeName": "gsi1sk", "KeyType": "RANGE"}]}])
        ddb.get_waiter("table_exists").wait(TableName=table)
        for i in range(3):
            ddb.put_item(TableName=table, ConditionExpression="attribute_not_exists(pk)", Item={
                "pk": {"S": "ENV#p#dev"}, "sk": {"S": f"RUN#{i:04d}"},
                "gsi1pk": {"S": "TASK#p#migrate"}, "gsi1sk": {"S": f"{i:04d}"}})
        try:
            ddb.put_item(TableName=table, ConditionExpression="attribute_not_exists(pk)",
                         Item={"pk": {"S": "ENV#p#dev"}, "sk": {"S": "RUN#0000"}})
            raise AssertionError("conditional put over an existing item succeeded")
        except ddb.exceptions.ConditionalCheckFailedException:
            pass
        q = ddb.query(TableName=table, KeyConditionExpression="pk = :p", ScanIndexForward=False, Limit=2,
                      ExpressionAttributeValues={":p": {"S": "ENV#p#dev"}})
        expect([i["sk"]["S"] for i in q["Items"]] == ["RUN#0002", "RUN#0001"], q["Items"])
        q = ddb.query(TableName=table, IndexName="gsi1", KeyConditionExpression="gsi1pk = :p",
                      ExpressionAttributeValues={":p": {"S": "TASK#p#migrate"}})
        expect(q["Count"] == 3, q)

    @check("DynamoDB TransactWriteItems (commit and cancel) and conditional UpdateItem")
    def _():
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "LOCK#p#dev"}, "sk": {"S": "LOCK"}, "owner": {"S": "a"}},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Update": {"TableName": table, "Key": {"pk": {"S": "ENV#p#dev"}, "sk": {"S": "STATE"}},
                        "UpdateExpression": "SET version = :v", "ExpressionAttributeValues": {":v": {"S": "v1"}}}}])
        try:
            ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": {"S": "LOCK#p#dev"}, "sk": {"S": "LOCK"}, "owner": {"S": "b"}},
                         "ConditionExpression": "attribute_not_exists(pk)"}}])
            raise AssertionError("second lock acquisition succeeded")
        except ddb.exceptions.TransactionCanceledException as e:
            reasons = [r.get("Code") for r in e.response.get("CancellationReasons", [])]
            expect(reasons == ["ConditionalCheckFailed"], reasons)
        r = ddb.update_item(TableName=table, Key={"pk": {"S": "ENV#p#dev"}, "sk": {"S": "STATE"}},
                            UpdateExpression="SET version = :n ADD deploys :one",
                            ConditionExpression="version = :old", ReturnValues="ALL_NEW",
                            ExpressionAttributeValues={":n": {"S": "v2"}, ":old": {"S": "v1"}, ":one": {"N": "1"}})
        expect(r["Attributes"]["version"]["S"] == "v2" and r["Attributes"]["deploys"]["N"] == "1", r["Attributes"])

    @check("STS GetCallerIdentity")
    def _():
        expect(sts.get_caller_identity()["Account"].isdigit(), "account")

    # ------------------------------------------------------------------ Lambda control plane
    role_arn = info.get("runnerRoleArn")

    @check("moto's CreateFunction refuses a role that does not exist")
    def _():
        try:
            lam.create_function(FunctionName="nope-dev-lumo-runner", Runtime="provided.al2023", Handler="bootstrap",
                                Role="arn:aws:iam::123456789012:role/does-not-exist", Code={"ZipFile": function_zip()})
            raise AssertionError("CreateFunction with a missing role succeeded")
        except lam.exceptions.InvalidParameterValueException as e:
            return str(e)[:90]

    @check("POST /_harness/iam/role creates a role (idempotent)")
    def _():
        a = harness_call(ep, "POST", "/_harness/iam/role", {"name": "selftest-role"})["arn"]
        b = harness_call(ep, "POST", "/_harness/iam/role", {"name": "selftest-role"})["arn"]
        expect(a == b and a.endswith(":role/selftest-role"), (a, b))
        expect(iam.get_role(RoleName="selftest-role")["Role"]["Arn"] == a, "iam GetRole")

    harness_call(ep, "POST", "/_harness/counters/reset")

    @check("CreateFunction + function_active_v2 waiter, GetFunction")
    def _():
        lam.create_function(FunctionName=FN, Runtime="provided.al2023", Handler="bootstrap", Role=role_arn,
                            Code={"ZipFile": function_zip()}, Timeout=10, MemorySize=256,
                            Environment={"Variables": {"FOO": "bar"}})
        lam.get_waiter("function_active_v2").wait(FunctionName=FN)
        cfg = lam.get_function(FunctionName=FN)["Configuration"]
        expect(cfg["State"] == "Active" and cfg["Runtime"] == "provided.al2023", cfg)

    @check("UpdateFunctionCode / UpdateFunctionConfiguration + function_updated_v2 waiter")
    def _():
        lam.update_function_code(FunctionName=FN, ZipFile=function_zip() + b"\0")
        lam.get_waiter("function_updated_v2").wait(FunctionName=FN)
        lam.update_function_configuration(FunctionName=FN, Timeout=10, Environment={"Variables": {"FOO": "bar"}})
        lam.get_waiter("function_updated_v2").wait(FunctionName=FN)
        c = lam.get_function_configuration(FunctionName=FN)
        expect(c["LastUpdateStatus"] == "Successful", c)

    # ------------------------------------------------------------------ Invoke (any runner)
    @check("Invoke of a *-lumo-runner function: HTTP 200 (never 5xx), result or X-Amz-Function-Error")
    def _():
        r = invoke(lam, {"selftest": "hello"})
        expect(r["StatusCode"] == 200, r["StatusCode"])
        expect(r.get("FunctionError") in (None, "Unhandled"), r.get("FunctionError"))
        state["echo"] = isinstance(r["_json"], dict) and r["_json"].get("echo") == {"selftest": "hello"}
        TIMINGS["first (cold) invoke"] = f"{r['_elapsed'] * 1000:.0f} ms"
        return ("echo protocol" if state["echo"] else
                f"not the echo runner ({r.get('FunctionError') or 'ok'}): protocol checks will be skipped")

    @check("Invoke of a function that was never created: 404 ResourceNotFoundException")
    def _():
        try:
            invoke(lam, {}, fn="never-created-lumo-runner")
            raise AssertionError("invoke succeeded")
        except lam.exceptions.ResourceNotFoundException as e:
            expect(e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response)

    @check("Invoke with a payload over 6 MB: 413 RequestTooLargeException")
    def _():
        try:
            lam.invoke(FunctionName=FN, Payload=b'"' + b"x" * (6 * 1024 * 1024) + b'"')
            raise AssertionError("invoke succeeded")
        except lam.exceptions.RequestTooLargeException as e:
            expect(e.response["ResponseMetadata"]["HTTPStatusCode"] == 413, e.response)

    def need_echo():
        if not state["echo"]:
            raise Skip("runner does not speak the echo protocol")

    # ------------------------------------------------------------------ Invoke (echo protocol)
    @check("echo: payload, function env, reserved env, ARN and a real deadline reach the runner")
    def _():
        need_echo()
        r = invoke(lam, {"x": [1, 2, 3]})
        j = r["_json"]
        expect(r.get("FunctionError") is None, r["_body"][:300])
        expect(j["echo"] == {"x": [1, 2, 3]}, j["echo"])
        env = j["env"]
        expect(env.get("FOO") == "bar", "function Environment not passed")
        expect(env.get("AWS_LAMBDA_FUNCTION_NAME") == FN, env.get("AWS_LAMBDA_FUNCTION_NAME"))
        expect(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") == "256", env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"))
        expect(env.get("AWS_REGION") == "us-east-1", env.get("AWS_REGION"))
        expect(env.get("AWS_ENDPOINT_URL") == ep, env.get("AWS_ENDPOINT_URL"))
        expect(j["functionArn"].endswith(":function:" + FN), j["functionArn"])
        expect(8000 < j["remainingMs"] <= 10000, f"remainingMs {j['remainingMs']} for Timeout=10")

    @check("echo: warm instance is reused, its TMPDIR is private")
    def _():
        need_echo()
        a, b = invoke(lam, {})["_json"], invoke(lam, {})["_json"]
        expect(a["pid"] == b["pid"], (a["pid"], b["pid"]))
        expect(a["env"].get("TMPDIR", "").startswith(info["logDir"]), a["env"].get("TMPDIR"))

    @check("echo: handler error -> HTTP 200 + X-Amz-Function-Error: Unhandled + error JSON")
    def _():
        need_echo()
        r = invoke(lam, {"fail": "boom"})
        expect(r["ResponseMetadata"]["HTTPStatusCode"] == 200, r["ResponseMetadata"]["HTTPStatusCode"])
        expect(r.get("FunctionError") == "Unhandled", r.get("FunctionError"))
        expect(r["_json"]["errorMessage"] == "boom", r["_body"])

    @check("echo: a 5 s invocation completes (no proxy timeout)")
    def _():
        need_echo()
        r = invoke(lam, {"sleepMs": 5000})
        expect(r.get("FunctionError") is None and r["_elapsed"] >= 5.0, (r.get("FunctionError"), r["_elapsed"]))
        return f"{r['_elapsed']:.2f} s"

    @check("echo: the runner reaches a presigned S3 URL through the router")
    def _():
        need_echo()
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p/bundles/a.zip"}, ExpiresIn=300)
        j = invoke(lam, {"httpGet": url})["_json"]
        expect(j.get("httpStatus") == 200 and j.get("httpBody") == "hello bundle", j)

    @check("echo: 3 concurrent invokes run in 3 instances at once")
    def _():
        need_echo()
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            rs = list(pool.map(lambda _: invoke(lam, {"sleepMs": 2000}), range(3)))
        took = time.monotonic() - t0
        pids = {r["_json"]["pid"] for r in rs}
        expect(len(pids) == 3 and took < 3.9, (pids, took))
        return f"{took:.2f} s"

    @check("echo: function timeout -> Unhandled Sandbox.Timedout, instance replaced")
    def _():
        need_echo()
        lam.update_function_configuration(FunctionName=FN, Timeout=2)
        lam.get_waiter("function_updated_v2").wait(FunctionName=FN)
        r = invoke(lam, {"sleepMs": 6000})
        expect(r.get("FunctionError") == "Unhandled", r.get("FunctionError"))
        expect(r["_json"]["errorType"] == "Sandbox.Timedout" and "2.00 seconds" in r["_json"]["errorMessage"], r["_body"])
        expect(1.9 < r["_elapsed"] < 4, r["_elapsed"])
        j = invoke(lam, {})["_json"]
        expect(j["remainingMs"] <= 2000, j["remainingMs"])
        lam.update_function_configuration(FunctionName=FN, Timeout=10)
        lam.get_waiter("function_updated_v2").wait(FunctionName=FN)
        return f"{r['_elapsed']:.2f} s"

    @check("echo: runner crash -> Unhandled Runtime.ExitError, next invoke cold-starts")
    def _():
        need_echo()
        r = invoke(lam, {"exit": 3})
        expect(r.get("FunctionError") == "Unhandled" and r["_json"]["errorType"] == "Runtime.ExitError", r["_body"])
        expect(invoke(lam, {})["_json"]["echo"] == {}, "invoke after crash")

    @check("echo: configuration change recycles instances (new env visible)")
    def _():
        need_echo()
        before = invoke(lam, {})["_json"]["pid"]
        lam.update_function_configuration(FunctionName=FN, Environment={"Variables": {"FOO": "baz"}})
        lam.get_waiter("function_updated_v2").wait(FunctionName=FN)
        j = invoke(lam, {})["_json"]
        expect(j["env"]["FOO"] == "baz" and j["pid"] != before, (j["env"]["FOO"], j["pid"], before))

    @check("echo: response over 6 MB -> Function.ResponseSizeTooLarge")
    def _():
        need_echo()
        r = invoke(lam, {"bigResponse": 7 * 1024 * 1024})
        expect(r.get("FunctionError") == "Unhandled" and r["_json"]["errorType"] == "Function.ResponseSizeTooLarge", r["_body"][:200])

    @check("echo: LogType=Tail, invoke by ARN, InvocationType Event and DryRun")
    def _():
        need_echo()
        r = invoke(lam, {}, LogType="Tail")
        expect(b"START RequestId" in base64.b64decode(r["LogResult"]), r.get("LogResult"))
        arn = lam.get_function(FunctionName=FN)["Configuration"]["FunctionArn"]
        expect(invoke(lam, {"a": 1}, fn=arn)["_json"]["echo"] == {"a": 1}, "by ARN")
        expect(lam.invoke(FunctionName=FN, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202, "Event")
        expect(lam.invoke(FunctionName=FN, InvocationType="DryRun", Payload=b"{}")["StatusCode"] == 204, "DryRun")

    # ------------------------------------------------------------------ counters
    @check("counters: PutObject (incl. presigned), CreateFunction, UpdateFunctionCode/Configuration, Invoke; reset")
    def _():
        harness_call(ep, "POST", "/_harness/counters/reset")
        s3.put_object(Bucket=bucket, Key="c/1", Body=b"1")
        url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "c/2"}, ExpiresIn=60)
        urllib.request.urlopen(urllib.request.Request(url, data=b"2", method="PUT"), timeout=30).read()
        s3.copy_object(Bucket=bucket, Key="c/3", CopySource={"Bucket": bucket, "Key": "c/1"})  # not a PutObject
        s3.put_object_tagging(Bucket=bucket, Key="c/1", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
        lam.create_function(FunctionName="count-dev-lumo-runner", Runtime="provided.al2023", Handler="bootstrap",
                            Role=role_arn, Code={"ZipFile": function_zip()})
        lam.update_function_code(FunctionName="count-dev-lumo-runner", ZipFile=function_zip() + b"1")
        lam.update_function_configuration(FunctionName="count-dev-lumo-runner", Timeout=5)
        invoke(lam, {}, fn="count-dev-lumo-runner")
        invoke(lam, {}, fn="count-dev-lumo-runner")
        c = harness_call(ep, "GET", "/_harness/counters")
        want = {"s3PutObject": 2, "lambdaCreateFunction": 1, "lambdaUpdateFunctionCode": 1,
                "lambdaUpdateFunctionConfiguration": 1, "lambdaInvoke": 2}
        expect({k: c[k] for k in want} == want, c)
        expect(c["lambdaInvokeByFunction"] == {"count-dev-lumo-runner": 2}, c)
        c = harness_call(ep, "POST", "/_harness/counters/reset")
        expect(all(c[k] == 0 for k in want), c)

    # ------------------------------------------------------------------ outage
    @check("outage: connections closed without a response, /_harness still answers, ends on {seconds: 0}")
    def _():
        harness_call(ep, "POST", "/_harness/outage", {"seconds": 30})
        try:
            s3.list_buckets()
            raise AssertionError("request during outage succeeded")
        except (botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectionError) as e:
            kind = e.__class__.__name__
        expect(harness_call(ep, "GET", "/_harness/counters") is not None, "harness API during outage")
        harness_call(ep, "POST", "/_harness/outage", {"seconds": 0})
        s3.list_buckets()
        harness_call(ep, "POST", "/_harness/outage", {"seconds": 1})
        time.sleep(1.2)
        s3.list_buckets()
        return kind

    # ------------------------------------------------------------------ timings
    @check("timing figures")
    def _():
        direct, _, _, _, _ = clients(info["motoEndpoint"])
        def avg(fn, n=20):
            fn()
            ts = []
            for _ in range(n):
                t0 = time.monotonic()
                fn()
                ts.append(time.monotonic() - t0)
            return statistics.median(ts) * 1000
        TIMINGS["S3 HeadObject via router (median)"] = f"{avg(lambda: s3.head_object(Bucket=bucket, Key='p/bundles/a.zip')):.1f} ms"
        TIMINGS["S3 HeadObject direct to moto (median)"] = f"{avg(lambda: direct.head_object(Bucket=bucket, Key='p/bundles/a.zip')):.1f} ms"
        TIMINGS["warm Invoke round trip (median)"] = f"{avg(lambda: invoke(lam, {})):.1f} ms"
        harness_call(ep, "POST", "/_harness/lambda/reset")
        t0 = time.monotonic()
        invoke(lam, {})
        TIMINGS["cold Invoke round trip (after /_harness/lambda/reset)"] = f"{(time.monotonic() - t0) * 1000:.0f} ms"

    # ------------------------------------------------------------------ process hygiene
    def hygiene(name: str, how: str):
        @check(name)
        def _():
            sleeper = subprocess.Popen(["sleep", "600"])
            try:
                p2, i2 = start_harness(args, os.path.join(base, how), sleeper.pid)
                _, _, lam2, _, _ = clients(i2["endpoint"])
                lam2.create_function(FunctionName="hyg-dev-lumo-runner", Runtime="provided.al2023", Handler="bootstrap",
                                     Role=i2["runnerRoleArn"], Code={"ZipFile": function_zip()}, Timeout=60)
                lam2.invoke(FunctionName="hyg-dev-lumo-runner", InvocationType="Event",
                            Payload=json.dumps({"sleepMs": 30000} if state["echo"] else {}).encode())
                time.sleep(0.7)  # let the instance start
                tree = proc_tree(p2.pid)
                expect(len(tree) >= 2, f"harness tree too small: {describe(tree)}")
                t0 = time.monotonic()
                if how == "parent-death":
                    sleeper.kill()
                elif how == "sigkill":
                    p2.kill()
                else:
                    p2.send_signal(signal.SIGTERM)
                try:
                    rc = p2.wait(10)
                except subprocess.TimeoutExpired:
                    p2.kill()
                    rc = "still running after 10 s"
                left = wait_gone(tree - {p2.pid}, 5)
                expect(not left, f"left behind: {describe(left)}")
                if how != "sigkill":
                    expect(rc == 0, f"harness exit {rc}")
                return f"{len(tree)} processes gone in {time.monotonic() - t0:.2f} s"
            finally:
                sleeper.kill()
                sleeper.wait()
        return _

    # ------------------------------------------------------------------ response streaming
    # A harness of its own whose "runner" is STREAMING_RUNTIME, with a 4 KiB stream limit.
    script = os.path.join(base, "streaming-runtime")
    with open(script, "w") as f:
        f.write(f"#!{sys.executable}\n" + STREAMING_RUNTIME)
    os.chmod(script, 0o755)
    sproc, sinfo = start_harness(args, os.path.join(base, "streaming"), os.getpid(),
                                 extra=["--stream-limit", "4096"], runner_bin=script)
    _, _, slam, _, _ = clients(sinfo["endpoint"])
    sfn = "stream-dev-lumo-runner"
    slam.create_function(FunctionName=sfn, Runtime="provided.al2023", Handler="bootstrap",
                         Role=sinfo["runnerRoleArn"], Code={"ZipFile": function_zip()}, Timeout=10)

    @check("InvokeWithResponseStream: PayloadChunks arrive as the function writes them, then InvokeComplete")
    def _():
        chunks, complete, r = stream_invoke(slam, {"chunks": [["one\n", 0], ["two\n", 400], ["three\n", 400]]}, sfn,
                                            LogType="Tail")
        expect(r["StatusCode"] == 200, r["StatusCode"])
        expect(r["ResponseStreamContentType"] == "application/vnd.amazon.eventstream", r["ResponseStreamContentType"])
        expect(b"".join(c for _, c in chunks) == b"one\ntwo\nthree\n", chunks)
        expect(complete is not None and not complete.get("ErrorCode"), complete)
        expect("LogResult" in complete, complete)
        first, last = chunks[0][0], chunks[-1][0]
        expect(last - first >= 0.6, f"chunks were not relayed as written: {[round(t, 3) for t, _ in chunks]}")
        return f"first chunk at {first * 1000:.0f} ms, last at {last * 1000:.0f} ms"

    @check("InvokeWithResponseStream: an error in the trailers ends in InvokeComplete's ErrorCode/ErrorDetails")
    def _():
        chunks, complete, _ = stream_invoke(slam, {"chunks": [["partial", 0]],
                                                   "trailerError": ["Runtime.StreamError", "it broke"]}, sfn)
        expect(b"".join(c for _, c in chunks) == b"partial", chunks)
        expect(complete == {"ErrorCode": "Runtime.StreamError", "ErrorDetails": "it broke"}, complete)

    @check("InvokeWithResponseStream: a handler error before any output, and a buffered response")
    def _():
        chunks, complete, r = stream_invoke(slam, {"fail": "nope"}, sfn)
        expect(r["StatusCode"] == 200 and not chunks, (r["StatusCode"], chunks))
        expect(complete == {"ErrorCode": "Selftest.Failed", "ErrorDetails": "nope"}, complete)
        chunks, complete, _ = stream_invoke(slam, {"buffered": 7}, sfn)
        expect(json.loads(b"".join(c for _, c in chunks)) == {"buffered": 7}, chunks)
        expect(not complete.get("ErrorCode"), complete)

    @check("InvokeWithResponseStream: past --stream-limit the stream is cut and InvokeComplete says so")
    def _():
        chunks, complete, _ = stream_invoke(slam, {"chunks": [["x" * 3000, 0], ["y" * 3000, 0]]}, sfn)
        expect(sum(len(c) for _, c in chunks) <= 4096, len(b"".join(c for _, c in chunks)))
        expect(complete.get("ErrorCode") == "Function.ResponseSizeTooLarge", complete)
        streams = harness_call(sinfo["endpoint"], "GET", "/_harness/lambda/streams")
        expect(streams["streamLimit"] == 4096 and streams["streams"][-1]["overflow"], streams)

    @check("plain Invoke of a streaming function gets the whole body")
    def _():
        r = invoke(slam, {"chunks": [["a", 0], ["b", 100]]}, fn=sfn)
        expect(r["_body"] == b"ab" and r.get("FunctionError") is None, r["_body"])

    @check("InvokeWithResponseStream of a function that was never created: 404")
    def _():
        try:
            stream_invoke(slam, {}, "never-created-lumo-runner")
            raise AssertionError("invoke succeeded")
        except slam.exceptions.ResourceNotFoundException as e:
            expect(e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response)

    sproc.send_signal(signal.SIGTERM)
    try:
        sproc.wait(10)
    except subprocess.TimeoutExpired:
        sproc.kill()

    hygiene("parent death (--parent-pid) kills the harness and every child", "parent-death")
    hygiene("SIGTERM kills every child, exit 0", "sigterm")
    hygiene("SIGKILL of the harness still takes its children down (PDEATHSIG)", "sigkill")

    # ------------------------------------------------------------------ the main harness
    main_tree = proc_tree(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "timeout"

    @check("main harness stops on SIGTERM with nothing left")
    def _():
        left = wait_gone(main_tree - {proc.pid}, 5)
        expect(rc == 0 and not left, (rc, describe(left)))

    print("# timings:", flush=True)
    for k, v in TIMINGS.items():
        print(f"#   {k}: {v}", flush=True)
    if RESULTS["failed"] == 0 and not args.log_dir:
        subprocess.run(["rm", "-rf", base])
    elif RESULTS["failed"]:
        print(f"# logs kept in {base}", flush=True)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed, {RESULTS['skipped']} skipped", flush=True)
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
