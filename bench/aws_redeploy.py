#!/usr/bin/env python3
"""lumo's benchmark for an unchanged redeploy on the AWS emulators (issue "AWS"): each figure,
its target, the ratio to the target.

    bench/aws_redeploy.py                 # `cargo build -p lumo-cli`, measure target/debug/lumo
    bench/aws_redeploy.py --release       # build and measure the release binary instead
    bench/aws_redeploy.py --lumo PATH     # measure an existing binary
    bench/aws_redeploy.py --runs 20 --profile            # + a request timeline of one redeploy
    bench/aws_redeploy.py --runner-bin target/release/lumo-runner   # the function's binary
    bench/aws_redeploy.py --without-rust-tasks           # leave functions/tasks/<crate>/ out

What it does: installs/finds the emulator venv (`tests/emulators/setup`) and re-runs itself
with the venv's python (for boto3); starts `tests/emulators/harness.py` (moto + the router that
runs the real `lumo-runner` for Invoke); creates a bucket and a table shaped as
`infra/lumo.yaml` makes them; copies the example project (`lumo.config.example.js`,
`functions/`, `migrations/`) into a temporary directory with a `lumo.config.js` that extends
the example with `provider: 'aws'` and the `aws` block; deploys it once (`--deploy-version
v1`: creates the runner function, uploads the bundles), then times N unchanged redeploys of
the same version (`--quiet`).

Figures:
  1. unchanged redeploy, wall clock of the whole `lumo` process (median)     target <= 1 s
  2. S3 PutObject of bundles during the N redeploys                          target 0
  3. Lambda UpdateFunctionCode during them                                   target 0
  4. Lambda UpdateFunctionConfiguration / CreateFunction during them         target 0
The redeploys still run every task whose `runOn` includes `update` (correct behaviour), so the
wall clock includes those Invokes, and each of those runs PUTs its log to S3 through a
presigned URL: the harness's `s3PutObject` counter counts those too, so the bundle figure is
taken from the router's log (PUTs under `<project>/bundles/`), and the counters are printed
beside it. A breakdown of where the time goes, from the router's per-request timings, follows
the table; `--profile` adds one more redeploy with `LUMO_LOG=lumo=debug` and prints its
requests on a timeline from the process start, with the gaps between them (time spent in lumo
itself), and its log.

Rust tasks of the example (`functions/tasks/seed/`) are built by every deploy with `cargo lambda
build` from the venv, `CARGO_LAMBDA_COMPILER=cargo` (zig is not installed), offline, into
`target/bench-aws-tasks/` (kept between bench runs: only the first pays the cold build).

Exit code 0 when every figure meets its target, 1 when one misses, 2 when the setup fails.
Everything runs on 127.0.0.1; every process started here is stopped on exit.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REEXEC_MARK = "LUMO_BENCH_IN_VENV"
PROJECT = "lumo-example"   # projectName of lumo.config.example.js
ENV = "dev"
VERSION = "v1"


class SetupError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# venv, builds, harness

def venv_path() -> Path:
    out = subprocess.run([str(REPO / "tests/emulators/setup")], stdout=subprocess.PIPE, check=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def reexec_into_venv():
    """Runs the script that was started (this one, or one importing this) again with the emulator
    venv's python (boto3), unless already there."""
    try:
        import boto3  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get(REEXEC_MARK):
        sys.exit("error: boto3 is missing from the emulator venv; run tests/emulators/setup")
    venv = venv_path()
    python = venv / "bin" / "python"
    env = dict(os.environ, **{REEXEC_MARK: str(venv)})
    os.execve(str(python), [str(python), str(Path(sys.argv[0]).resolve()), *sys.argv[1:]], env)


def build_lumo(release: bool) -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    cmd = ["cargo", "build", "-p", "lumo-cli"]
    if release:
        cmd[2:2] = ["--release", "--locked"]
    print(f"building lumo: {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, cwd=REPO, check=True)
    return target / ("release" if release else "debug") / "lumo"


class Harness:
    def __init__(self, venv: Path, log_dir: Path, runner_bin: Path = None):
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr = open(log_dir / "harness-stderr.log", "ab")
        self.proc = subprocess.Popen(
            [str(venv / "bin/python"), str(REPO / "tests/emulators/harness.py"), "--workspace", str(REPO),
             "--log-dir", str(log_dir), "--parent-pid", str(os.getpid()), "--startup-timeout", "900",
             *(["--runner-bin", str(runner_bin)] if runner_bin else [])],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr)
        line = self.proc.stdout.readline()
        try:
            self.ready = json.loads(line)
        except ValueError:
            self.stop()
            err = (log_dir / "harness-stderr.log").read_text(errors="replace")
            raise SetupError(f"the emulator harness did not start; its stderr:\n{err}")
        self.endpoint = self.ready["endpoint"]

    def call(self, method: str, path: str, body: bytes = None):
        req = urllib.request.Request(self.endpoint + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def counters(self) -> dict:
        return self.call("GET", "/_harness/counters")

    def reset_counters(self):
        self.call("POST", "/_harness/counters/reset", b"{}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def create_bucket_and_table(endpoint: str, bucket: str, table: str):
    import boto3
    from botocore.config import Config
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **kw).create_bucket(Bucket=bucket)
    attr = lambda n: {"AttributeName": n, "AttributeType": "S"}  # noqa: E731
    key = lambda n, t: {"AttributeName": n, "KeyType": t}  # noqa: E731
    boto3.client("dynamodb", **kw).create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[attr("pk"), attr("sk"), attr("gsi1pk"), attr("gsi1sk"), attr("gsi2pk")],
        KeySchema=[key("pk", "HASH"), key("sk", "RANGE")],
        GlobalSecondaryIndexes=[
            {"IndexName": "by-task", "KeySchema": [key("gsi1pk", "HASH"), key("gsi1sk", "RANGE")],
             "Projection": {"ProjectionType": "ALL"}},
            {"IndexName": "by-id", "KeySchema": [key("gsi2pk", "HASH")], "Projection": {"ProjectionType": "ALL"}},
        ])


# --------------------------------------------------------------------------------------------
# the project

def copy_project(dest: Path, without_rust_tasks: bool) -> tuple:
    """The example project in `dest`; returns (Rust task crates kept, Rust task crates left out)."""
    shutil.copy2(REPO / "lumo.config.example.js", dest / "lumo.config.example.js")
    ignore = shutil.ignore_patterns("target", ".lumo")
    left_out = []
    if without_rust_tasks:
        for manifest in sorted((REPO / "functions").rglob("Cargo.toml")):
            if "target" not in manifest.relative_to(REPO).parts:
                left_out.append(manifest.parent.relative_to(REPO))
        crate_dirs = {REPO / d for d in left_out}
        ignore_common = ignore
        ignore = lambda d, names: set(ignore_common(d, names)) | {  # noqa: E731
            n for n in names if Path(d, n) in crate_dirs}
    for d in ("functions", "migrations"):
        if (REPO / d).is_dir():
            shutil.copytree(REPO / d, dest / d, symlinks=True, ignore=ignore)
    crates = []
    for manifest in sorted((dest / "functions").rglob("Cargo.toml")):
        original = REPO / manifest.relative_to(dest)
        # Relative path dependencies (the `lumo-task` SDK) still point at the repository.
        text = manifest.read_text()
        fixed = re.sub(r'(\bpath\s*=\s*")([^"]+)(")',
                       lambda m: m.group(1) + (m.group(2) if os.path.isabs(m.group(2)) else
                                               str((original.parent / m.group(2)).resolve())) + m.group(3),
                       text)
        manifest.write_text(fixed)
        # Its own lock file, else the repository's (resolved offline, no registry access).
        if not (manifest.parent / "Cargo.lock").exists() and (REPO / "Cargo.lock").exists():
            shutil.copy2(REPO / "Cargo.lock", manifest.parent / "Cargo.lock")
        crates.append(manifest.parent.relative_to(dest))
    return crates, left_out


def write_config(dest: Path, bucket: str, table: str, role_arn: str, left_out: list):
    # Extends the example as it is, so the bench follows it. x86_64: the emulator runs the host's
    # runner binary (and `cargo lambda build --arm64` would need zig for a Rust task).
    tasks = ""
    if left_out:
        names = [str(Path(*d.parts[2:])) for d in left_out]  # functions/tasks/<name>
        tasks = (f"  tasks: Object.fromEntries(Object.entries(example.tasks ?? {{}})"
                 f".filter(([name]) => !{json.dumps(names)}.includes(name))),\n")
    (dest / "lumo.config.js").write_text(f"""// bench/aws_redeploy.py: the example project on the AWS emulators
import example from './lumo.config.example.js';

export default {{
  ...example,
  provider: 'aws',
  region: 'us-east-1',
  aws: {{ bucket: {json.dumps(bucket)}, table: {json.dumps(table)}, roleArn: {json.dumps(role_arn)},
         architecture: 'x86_64' }},
{tasks}}};
""")


# --------------------------------------------------------------------------------------------
# router.log

LINE = re.compile(r"^(\S+) (\S+) (\S+) -> (.*) ([0-9.]+)ms$")


def router_requests(log: Path, offset: int, with_time=False) -> list:
    """(method, path, status, ms) of every request logged after `offset`; with `with_time`,
    (end as epoch seconds, method, path, status, ms)."""
    out = []
    with open(log, "rb") as f:
        f.seek(offset)
        for raw in f.read().decode(errors="replace").splitlines():
            m = LINE.match(raw)
            if m:
                row = (m.group(2), m.group(3), m.group(4), float(m.group(5)))
                if with_time:
                    end = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
                    row = (end.replace(tzinfo=datetime.timezone.utc).timestamp(), *row)
                out.append(row)
    return out


def timeline(requests: list, started: float, ended: float) -> list:
    """Lines of a request timeline relative to the process start, with the gaps (time in lumo)."""
    lines = [f"  {'start':>8} {'ms':>8} {'gap before':>10}  request"]
    cursor = started
    gaps = 0.0
    for end, method, path, _status, ms in sorted(requests, key=lambda r: r[0] - r[4] / 1000):
        begin = end - ms / 1000
        gap = max(0.0, begin - cursor) * 1000
        gaps += gap
        short = path.split("?")[0]
        short = short if len(short) <= 70 else short[:67] + "..."
        lines.append(f"  {(begin - started) * 1000:>8.1f} {ms:>8.1f} {gap:>10.1f}  {method} {short}")
        cursor = max(cursor, end)
    tail = max(0.0, ended - cursor) * 1000
    gaps += tail
    lines.append(f"  {(ended - started) * 1000:>8.1f} {'':>8} {tail:>10.1f}  (process exit)")
    lines.append(f"  time outside any request (lumo's own work, process start and exit): {gaps:.1f} ms "
                 f"of {(ended - started) * 1000:.1f} ms")
    return lines


def classify(method: str, path: str, headers_target: str = "") -> str:
    p = path.split("?")[0]
    if p.startswith("/_harness"):
        return "harness"
    if p.startswith("/2015-03-31/functions"):
        if p.endswith("/invocations"):
            return "lambda Invoke"
        return f"lambda {method} {'configuration' if p.endswith('/configuration') else 'code' if p.endswith('/code') else 'function'}"
    if method == "POST" and p == "/":
        return "dynamodb / sts (POST /)"
    segs = p.split("/", 2)
    if len(segs) == 3 and segs[2]:
        key = segs[2]
        kind = "bundles" if "/bundles/" in f"/{key}" else "logs" if "/logs/" in f"/{key}" else "other"
        return f"s3 {method} {kind}"
    return f"other {method}"


def breakdown(requests: list, runs: int) -> list:
    table = {}
    for method, path, _status, ms in requests:
        k = classify(method, path)
        n, total = table.get(k, (0, 0.0))
        table[k] = (n + 1, total + ms)
    rows = sorted(table.items(), key=lambda kv: -kv[1][1])
    return [(k, n / runs, total / runs) for k, (n, total) in rows]


# --------------------------------------------------------------------------------------------

def run_lumo(lumo: Path, cwd: Path, env: dict, extra=(), capture=False):
    cmd = [str(lumo), "deploy", "--env", ENV, "--deploy-version", VERSION, *extra]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ms = (time.perf_counter() - t0) * 1000
    if out.returncode != 0:
        raise SetupError(f"`{' '.join(cmd)}` exited with {out.returncode}:\n{out.stdout}{out.stderr}")
    return ms, out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lumo", type=Path, help="the lumo binary (default: build target/debug/lumo)")
    parser.add_argument("--release", action="store_true", help="build and measure target/release/lumo")
    parser.add_argument("--runner-bin", type=Path,
                        help="the runner binary the harness runs and lumo zips for the function (LUMO_RUNNER); "
                             "default: the harness's own debug build of lumo-runner")
    parser.add_argument("--runs", type=int, default=15, help="timed redeploys (at least 10; default 15)")
    parser.add_argument("--profile", action="store_true",
                        help="one more redeploy with LUMO_LOG=lumo=debug; print its log")
    parser.add_argument("--without-rust-tasks", action="store_true",
                        help="leave the example's Rust task crates (functions/tasks/<name>/Cargo.toml) out of the "
                             "copied project (a task without its file is then dropped from the config too)")
    parser.add_argument("--keep", action="store_true", help="keep the project and the harness logs")
    args = parser.parse_args()
    if args.runs < 10:
        parser.error("--runs must be at least 10")
    if args.lumo and args.release:
        parser.error("--lumo and --release are exclusive")
    reexec_into_venv()
    venv = Path(os.environ.get(REEXEC_MARK) or venv_path())

    if args.lumo:
        lumo, which = args.lumo.resolve(), f"{args.lumo.resolve()} (given with --lumo)"
    else:
        lumo = build_lumo(args.release)
        which = f"{lumo} ({'release' if args.release else 'debug'} build)"
    if not lumo.is_file():
        parser.error(f"no lumo binary at {lumo}")

    work = Path(tempfile.mkdtemp(prefix="lumo-bench-aws-"))
    harness = None
    failed = False
    try:
        print("starting the emulators...", file=sys.stderr)
        harness = Harness(venv, work / "emulators", args.runner_bin and args.runner_bin.resolve())
        ready = harness.ready
        bucket, table = "lumo-bench-bucket", "lumo-bench-table"
        create_bucket_and_table(harness.endpoint, bucket, table)
        project = work / "project"
        project.mkdir()
        crates, left_out = copy_project(project, args.without_rust_tasks)
        write_config(project, bucket, table, ready["runnerRoleArn"], left_out)

        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LUMO_", "AWS_")) and k != REEXEC_MARK}
        env.update({
            "AWS_ENDPOINT_URL": harness.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "LUMO_RUNNER": ready["runnerBin"],
            "LUMO_ACTOR": "bench",
            "NO_COLOR": "1",
            # Rust tasks: `cargo lambda` from the venv, building with plain cargo (zig, its
            # default linker, is not installed), offline, into a target directory kept between
            # bench runs (so only the first bench run pays the cold build).
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "CARGO_LAMBDA_COMPILER": "cargo",
            "CARGO_NET_OFFLINE": "true",
            "CARGO_TARGET_DIR": str(Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "bench-aws-tasks"),
        })

        print("first deploy...", file=sys.stderr)
        first_ms, _ = run_lumo(lumo, project, env)
        after_first = harness.counters()
        # One untimed redeploy: the first one after the function was created warms the runner.
        run_lumo(lumo, project, env, ["--quiet"])

        router_log = Path(ready["logDir"]) / "router.log"
        harness.reset_counters()
        offset = router_log.stat().st_size
        samples = []
        for _ in range(args.runs):
            ms, _ = run_lumo(lumo, project, env, ["--quiet"])
            samples.append(ms)
        counters = harness.counters()
        requests = router_requests(router_log, offset)
        bundle_puts = sum(1 for m, p, _s, _ms in requests if m == "PUT" and classify(m, p) == "s3 PUT bundles")
        log_puts = sum(1 for m, p, _s, _ms in requests if m == "PUT" and classify(m, p) == "s3 PUT logs")

        profile = None
        if args.profile:
            offset = router_log.stat().st_size
            started = time.time()
            _, profile = run_lumo(lumo, project, dict(env, LUMO_LOG="lumo=debug"), ["--quiet"])
            ended = time.time()
            profile_lines = timeline(router_requests(router_log, offset, with_time=True), started, ended)

        median, worst = statistics.median(samples), max(samples)
        invokes = counters["lambdaInvoke"]
        results = [
            ("unchanged redeploy, wall (median)", median, 1000.0, "ms",
             f"{args.runs} runs; min {min(samples):.0f}, max {worst:.0f} ms; "
             f"{invokes / args.runs:g} Invokes per redeploy ({invokes} in all: "
             f"{json.dumps(counters.get('lambdaInvokeByFunction', {}))})"),
            ("  same, slowest run (max)", worst, 1000.0, "ms", "for information; the target is on the median"),
            ("S3 PutObject of bundles", bundle_puts, 0, "", f"harness s3PutObject counter {counters['s3PutObject']} "
             f"= {log_puts} log uploads by the runner + {bundle_puts} bundle uploads"),
            ("Lambda UpdateFunctionCode", counters["lambdaUpdateFunctionCode"], 0, "", ""),
            ("Lambda UpdateFunctionConfiguration", counters["lambdaUpdateFunctionConfiguration"], 0, "", ""),
            ("Lambda CreateFunction", counters["lambdaCreateFunction"], 0, "", ""),
        ]

        print(f"lumo: {which}")
        runner_bin = Path(ready["runnerBin"])
        print(f"runner (LUMO_RUNNER, zipped by every deploy): {runner_bin} "
              f"({runner_bin.stat().st_size / 1024 / 1024:.1f} MB)")
        print(f"project: the example ({', '.join(sorted(p.name for p in (project / 'functions/tasks').iterdir()))})"
              f"{'; Rust task crates: ' + ', '.join(map(str, crates)) if crates else ''}"
              f"{'; left out (--without-rust-tasks): ' + ', '.join(map(str, left_out)) if left_out else ''}")
        print(f"first deploy: {first_ms:.0f} ms (CreateFunction {after_first['lambdaCreateFunction']}, "
              f"s3PutObject {after_first['s3PutObject']}, Invokes {after_first['lambdaInvoke']})")
        print(f"{'figure':<40} {'measured':>10} {'target':>8} {'ratio':>7}")
        for name, value, target, unit, note in results:
            info = name.startswith("  ")
            if target:
                ratio = value / target
                verdict = f"{ratio:>6.2f}x"
                miss = ratio > 1
            else:
                miss = value != 0
                verdict = "  MISS " if miss else "   ok  "
            failed |= miss and not info
            print(f"{name:<40} {value:>8.0f}{unit:<2} {target:>6.0f}{unit:<2} {verdict}  {note}")

        print(f"\nwhere a redeploy's time goes (router.log, per redeploy, of {median:.0f} ms median wall):")
        print(f"  {'requests':<36} {'count':>6} {'ms':>8}")
        for k, n, ms in breakdown(requests, args.runs):
            print(f"  {k:<36} {n:>6.1f} {ms:>8.1f}")
        in_router = sum(ms for _m, _p, _s, ms in requests) / args.runs
        print(f"  {'sum of request times (sequential)':<36} {'':>6} {in_router:>8.1f}")
        if profile is not None:
            print("\n--profile: one more redeploy with LUMO_LOG=lumo=debug; its requests (router.log):")
            print("\n".join(profile_lines))
            print("its stderr:")
            print(profile.stderr.rstrip())
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        args.keep = True
        sys.exit(2)
    finally:
        if harness is not None:
            harness.stop()
        if args.keep:
            print(f"kept: {work} (project/, emulators/ with router.log)", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
