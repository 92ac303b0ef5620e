#!/usr/bin/env python3
"""lumo's benchmark for live output on `aws` (issue 11): each figure, its baseline measured in
the same run, the ratio, and the target.

    bench/stream.py                  # `cargo build -p lumo-cli`, measure $CARGO_TARGET_DIR/debug/lumo
    bench/stream.py --lumo PATH      # measure an existing binary
    bench/stream.py --mb 100 --lines 20

What it does: re-runs itself with the emulator venv's python (boto3); starts
`tests/emulators/harness.py` (Lambda's 20 MiB stream limit, the real `lumo-runner`); creates a
bucket and a table; writes a project with three tasks — `ticker` (a line every 300 ms, each
with the time it was printed), `big` (prints --mb MB), `noop` — and deploys them one at a time
with `--only`.

Figures:
  1. first-line latency on aws: the task prints a line -> the CLI shows it (median over the
     lines of `ticker`; read from lumo's stderr as it comes)        target <= 300 ms
     baseline: the same task on `--provider local`
  2. peak RSS of the `lumo` process while `big` prints --mb MB on aws    target <= 64 MB
     baseline: the same `lumo` deploying `noop` on aws
  3. bytes the runner streamed for `big` (the harness counts them)      target <= 20 MiB
     baseline: what the task printed
  4. the log in S3 holds everything `big` printed                        target = printed
Exit 0 when every figure meets its target, 1 when one misses, 2 when the setup fails.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REEXEC_MARK = "LUMO_BENCH_IN_VENV"
STREAM_LIMIT = 20 * 1024 * 1024

sys.path.insert(0, str(HERE))
from aws_redeploy import (  # noqa: E402
    Harness, SetupError, create_bucket_and_table, reexec_into_venv, venv_path,
)



def now_ms() -> float:
    return time.time() * 1000


def watch_deploy(lumo, cwd, env, only, provider):
    """Deploys `only` and reads stderr as it comes: [(arrival ms, line)], exit code."""
    proc = subprocess.Popen([str(lumo), "deploy", "--env", "dev", "--only", only, "--provider", provider],
                            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    lines = []
    for raw in proc.stderr:
        lines.append((now_ms(), raw.decode(errors="replace").rstrip("\n")))
    return lines, proc.wait()


def latencies(lines):
    out = []
    for arrived, line in lines:
        # task output only (`ticker │ tick …`), not the summary that quotes its last line
        at = line.find("│ tick ")
        if at < 0:
            continue
        at += len("│ ")
        words = line[at + 5:].split()
        if len(words) >= 2 and words[1].isdigit():
            out.append(arrived - int(words[1]))
    return out


def peak_rss_mb(lumo, cwd, env, only):
    """Deploys `only` on aws with output discarded; (peak RSS of lumo in MB, seconds, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(lumo), "deploy", "--env", "dev", "--only", only], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, proc.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lumo", type=Path, help="the lumo binary (default: build the debug one)")
    parser.add_argument("--mb", type=int, default=100, help="MB the big task prints (default 100)")
    parser.add_argument("--lines", type=int, default=20, help="lines the ticker prints (default 20)")
    args = parser.parse_args()
    reexec_into_venv()
    import boto3
    from botocore.config import Config

    venv = Path(os.environ.get(REEXEC_MARK) or venv_path())
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    lumo = args.lumo
    if lumo is None:
        subprocess.run(["cargo", "build", "-p", "lumo-cli"], cwd=REPO, check=True)
        lumo = target / "debug" / "lumo"
    lumo = lumo.resolve()

    work = Path(tempfile.mkdtemp(prefix="lumo-bench-stream-"))
    harness = Harness(venv, work / "harness")
    try:
        endpoint = harness.endpoint
        bucket, table = "bench-stream-bundles", "bench-stream-audit"
        create_bucket_and_table(endpoint, bucket, table)
        project = work / "project"
        tasks = project / "functions" / "tasks"
        tasks.mkdir(parents=True)
        scripts = {
            "ticker": f'for i in $(seq 1 {args.lines}); do echo "tick $i $(date +%s%3N)"; sleep 0.3; done\n',
            "big": (f"head -c {args.mb * 1000 * 1000} /dev/zero | tr '\\0' 'x' | fold -w 99\n"
                    "echo printed\n"),
            "noop": "true\n",
        }
        for name, body in scripts.items():
            path = tasks / f"{name}.sh"
            path.write_text("#!/bin/sh\n" + body)
            path.chmod(0o755)
        (project / "lumo.config.js").write_text(
            "export default { projectName: 'bench-stream', provider: 'aws', region: 'us-east-1',\n"
            f"  aws: {{ bucket: '{bucket}', table: '{table}', roleArn: '{harness.ready['runnerRoleArn']}',\n"
            f"         architecture: '{'arm64' if platform.machine() in ('aarch64', 'arm64') else 'x86_64'}' }},\n"
            "  tasks: { ticker: {}, big: { timeout: 900 }, noop: {} } };\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/dev/null",
                   AWS_SHARED_CREDENTIALS_FILE="/dev/null", LUMO_RUNNER=harness.ready["runnerBin"],
                   LUMO_ACTOR="bench", NO_COLOR="1")

        # 1. latency: aws, then the same task locally
        for attempt in ("warm-up", "measured"):
            aws_lines, code = watch_deploy(lumo, project, env, "ticker", "aws")
            if code != 0:
                raise SetupError("deploy of `ticker` on aws failed:\n" + "\n".join(l for _, l in aws_lines))
        local_lines, code = watch_deploy(lumo, project, env, "ticker", "local")
        if code != 0:
            raise SetupError("deploy of `ticker` on local failed:\n" + "\n".join(l for _, l in local_lines))
        aws_lat, local_lat = latencies(aws_lines), latencies(local_lines)
        if len(aws_lat) != args.lines or len(local_lat) != args.lines:
            raise SetupError(f"expected {args.lines} ticks, got {len(aws_lat)} on aws, {len(local_lat)} locally")

        # 2. peak RSS: noop, then big
        base_rss, _, code = peak_rss_mb(lumo, project, env, "noop")
        if code != 0:
            raise SetupError("deploy of `noop` failed")
        big_rss, big_s, code = peak_rss_mb(lumo, project, env, "big")
        if code != 0:
            raise SetupError("deploy of `big` failed")

        # 3. what the runner streamed for `big`
        streams = harness.call("GET", "/_harness/lambda/streams")["streams"]
        big_stream = streams[-1]

        # 4. the log in S3
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing")
        s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **kw)
        history = json.loads(subprocess.run([str(lumo), "history", "--env", "dev", "--task", "big", "--json"],
                                            cwd=project, env=env, stdout=subprocess.PIPE, check=True).stdout)
        runs = history["runs"] if isinstance(history, dict) else history
        run = runs[0]
        # fold ends every full 99-byte line with a newline (the last, partial one has none)
        printed = args.mb * 1000 * 1000 + args.mb * 1000 * 1000 // 99 + len("printed\n")
        head = s3.head_object(Bucket=bucket, Key=f"bench-stream/logs/{run['id']}.log")
        in_s3 = head["ContentLength"]
    finally:
        harness.stop()
        # the harness's logs and moto's copy of 100 MB of log
        shutil.rmtree(work, ignore_errors=True)

    med_aws, med_local = statistics.median(aws_lat), statistics.median(local_lat)
    rows = [
        ("first-line latency on aws, median (ms)", med_aws, med_local, med_aws <= 300, "<= 300 ms"),
        ("  first line only (ms)", aws_lat[0], local_lat[0], True, "(shown)"),
        ("lumo peak RSS, task printing %d MB on aws (MB)" % args.mb, big_rss, base_rss, big_rss <= 64, "<= 64 MB"),
        ("bytes streamed for it (MiB)", big_stream["streamedBytes"] / 2**20, printed / 2**20,
         big_stream["streamedBytes"] <= STREAM_LIMIT and not big_stream["overflow"], "<= 20 MiB"),
        ("log in S3 (bytes)", in_s3, printed, in_s3 == printed, "= printed"),
    ]
    print(f"lumo: {lumo}")
    print(f"{'figure':52} {'measured':>12} {'baseline':>12} {'ratio':>7}  target")
    ok = True
    for name, value, base, met, target_text in rows:
        ratio = value / base if base else float("nan")
        print(f"{name:52} {value:12.1f} {base:12.1f} {ratio:7.2f}  {target_text} {'ok' if met else 'MISSED'}")
        ok &= met
    print(f"baselines: latency on `local`; RSS of the same lumo deploying `noop`; the bytes the task printed. "
          f"`big` took {big_s:.1f} s; run {run['id']} recorded {run['status']}.")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupError as e:
        print(f"setup failed: {e}", file=sys.stderr)
        sys.exit(2)
