#!/usr/bin/env python3
"""lumo's benchmarks (issue "the spine"): each figure, its target, and the ratio to the target.

    bench/run.py                  # builds `lumo` in release mode, then measures
    bench/run.py --lumo PATH      # measure an existing binary
    bench/run.py --lumo PATH --before OLD [--before-rev 15aa6e6]
                                  # and an older lumo in the same run, figure by figure (figure 5,
                                  # TypeScript, only for the newer one)

(The AWS issue's figures: bench/runner.py for the Lambda runner, bench/aws_redeploy.py for an
unchanged redeploy on the emulators.)

Figures (medians of repeated runs, wall clock, on this machine):
  1. `lumo run noop --env dev` minus `sh -c true`         target <= 20 ms
  2. `lumo deploy --env dev` of 10 no-op tasks            target <= 150 ms
  3. config load of lumo.config.example.js (in-process)    target <= 10 ms
  4. `lumo history --env dev --limit 50` over 1,000,000 runs  target <= 50 ms
  5. `lumo run hello-ts --env dev` minus `node -e '…'` doing the same work  target <= 40 ms
     (the TypeScript handler is bundled by the deploy beforehand; the baseline is Node importing
     nothing and printing one line and a result object: what the handler itself does)
"""

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def build_release() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    print("building lumo (release)...", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "lumo-cli"], cwd=REPO, check=True)
    return target / "release" / "lumo"


def timed(cmd, runs, cwd=None, env=None, warmup=2):
    for _ in range(warmup):
        subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def write_task(root: Path, name: str, body: str = "#!/bin/sh\nexit 0\n"):
    path = root / "functions" / "tasks" / f"{name}.sh"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(0o755)


def bench_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMO_")}
    env["NO_COLOR"] = "1"
    env["LUMO_ACTOR"] = "bench"
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lumo", type=Path, help="the lumo binary (default: build it in release mode)")
    parser.add_argument("--before", type=Path, help="an older lumo binary measured in the same run")
    parser.add_argument("--before-rev", default="15aa6e6", help="the commit --before was built from")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--history-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    lumo = str((args.lumo or build_release()).resolve())
    if not args.before:
        sys.exit(measure(lumo, args))
    before = str(args.before.resolve())
    print(f"== after: {lumo}")
    after_failed = measure(lumo, args)
    # The older lumo loads the example config of its own time (today's has keys it refuses).
    with tempfile.TemporaryDirectory(prefix="lumo-bench-before-") as old:
        archive = subprocess.run(["git", "archive", args.before_rev, "lumo.config.example.js", "functions"],
                                 cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        print(f"== before: {before} (example config of {args.before_rev})")
        measure(before, args, typescript=False, example=Path(old) / "lumo.config.example.js")
    sys.exit(after_failed)


def measure(lumo: str, args, typescript: bool = True, example: Path = REPO / "lumo.config.example.js") -> int:
    env = bench_env()
    results = []

    with tempfile.TemporaryDirectory(prefix="lumo-bench-") as tmp:
        tmp = Path(tmp)

        # 1. manual run overhead over the bare process.
        one = tmp / "one"
        one.mkdir()
        (one / "lumo.config.js").write_text(
            "export default { projectName: 'bench', environment: 'dev', tasks: { noop: { runOn: [] } } };\n")
        write_task(one, "noop")
        subprocess.run([lumo, "deploy", "--env", "dev"], cwd=one, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lumo_run = timed([lumo, "run", "noop", "--env", "dev", "--quiet"], args.runs, cwd=one, env=env)
        bare = timed(["sh", "-c", "true"], args.runs)
        results.append(("lumo run noop - sh -c true", lumo_run - bare, 20.0,
                        f"lumo run {lumo_run:.1f} ms, sh -c true {bare:.1f} ms"))

        # 2. a deploy of 10 no-op tasks (every one runs: runOn defaults to deploy and update).
        ten = tmp / "ten"
        ten.mkdir()
        (ten / "lumo.config.js").write_text("export default { projectName: 'bench', environment: 'dev' };\n")
        for i in range(10):
            write_task(ten, f"noop-{i:02}")
        deploy = timed([lumo, "deploy", "--env", "dev", "--quiet", "--deploy-version", "b"],
                       max(10, args.runs // 3), cwd=ten, env=env)
        results.append(("deploy of 10 no-op tasks", deploy, 150.0, "wall clock, whole process"))

        # 3. config load, timed inside the process (LUMO_LOG=lumo=debug prints it).
        cfg_env = dict(env, LUMO_LOG="lumo=debug")
        loads = []
        for _ in range(args.runs):
            out = subprocess.run([lumo, "tasks", "--config", str(example)],
                                 env=cfg_env, capture_output=True, text=True, check=True)
            m = re.search(r"config loaded in ([0-9.]+)ms", out.stderr)
            if not m:
                sys.exit(f"no config timing in lumo's debug output:\n{out.stderr}")
            loads.append(float(m.group(1)))
        whole = timed([lumo, "tasks", "--config", str(example)], args.runs, env=env)
        results.append(("config load (lumo.config.example.js)", statistics.median(loads), 10.0,
                        f"whole `lumo tasks` process {whole:.1f} ms"))

        # 4. history over a million runs: fill the store lumo created, then query it.
        db = one / ".lumo" / "lumo.db"
        fill(db, args.history_rows)
        history = timed([lumo, "history", "--env", "dev", "--limit", "50"], args.runs, cwd=one, env=env)
        out = subprocess.run([lumo, "history", "--env", "dev", "--limit", "50", "--json"], cwd=one, env=env,
                             capture_output=True, text=True, check=True)
        assert len(json.loads(out.stdout)["runs"]) == 50
        results.append((f"history --limit 50 over {args.history_rows:,} runs", history, 50.0, "whole process"))

        # 5. a manual run of a TypeScript handler over the bare Node.js doing the same work.
        # (skipped for a lumo from before handlers)
        ts = tmp / "ts" if typescript else None
        if ts is not None:
            (ts / "functions" / "tasks").mkdir(parents=True)
            (ts / "lumo.config.js").write_text(
                "export default { projectName: 'bench', environment: 'dev', tasks: { 'hello-ts': { runOn: [] } } };\n")
            (ts / "functions" / "tasks" / "hello-ts.ts").write_text(
                "export const run = async (ctx: { deployment: { environment: string } }) => {\n"
                "  console.log('hello');\n"
                "  return { success: true, message: `hello ${ctx.deployment.environment}` };\n"
                "};\n")
            subprocess.run([lumo, "deploy", "--env", "dev"], cwd=ts, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            lumo_ts = timed([lumo, "run", "hello-ts", "--env", "dev", "--quiet"], args.runs, cwd=ts, env=env)
            node = timed(["node", "-e", "console.log('hello'); "
                          "JSON.stringify({ success: true, message: 'hello dev' })"], args.runs)
            results.append(("lumo run hello-ts - node -e", lumo_ts - node, 40.0,
                            f"lumo run {lumo_ts:.1f} ms, node -e {node:.1f} ms"))

    print(f"{'figure':<48} {'measured':>10} {'target':>8} {'ratio':>7}")
    failed = False
    for name, value, target, note in results:
        ratio = value / target
        failed |= ratio > 1
        print(f"{name:<48} {value:>8.1f}ms {target:>6.0f}ms {ratio:>6.2f}x  {note}")
    return 1 if failed else 0


def fill(db: Path, rows: int):
    """Adds `rows` finished runs to the `dev` environment of the store at `db`."""
    conn = sqlite3.connect(db)
    project, = conn.execute("SELECT project FROM runs LIMIT 1").fetchone()
    start = 1_700_000_000_000
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

    def ulid(ms, n):
        # A valid, time-ordered ULID for synthetic rows (older than every real run).
        t = "".join(alphabet[(ms >> (5 * i)) & 31] for i in reversed(range(10)))
        r = "".join(alphabet[(n >> (5 * i)) & 31] for i in reversed(range(16)))
        return t + r

    print(f"filling {db} with {rows:,} runs...", file=sys.stderr)
    with conn:
        conn.executemany(
            "INSERT INTO runs (id, deployment_id, project, env, task, trigger, version, previous_version,"
            " bundle_hash, actor, status, attempt, started_at, ended_at, duration_ms, exit_code, message, data,"
            " data_ref, log_ref, output_tail, output_bytes)"
            " VALUES (?, NULL, ?, 'dev', ?, 'manual', ?, NULL, ?, 'bench', 'succeeded', 1, ?, ?, 5, 0, 'ok',"
            " NULL, NULL, NULL, 'ok', 3)",
            ((ulid(start + i, i), project, f"task-{i % 20}", f"v{i}", "0" * 64, start + i, start + i + 5)
             for i in range(rows)),
        )
    conn.close()


if __name__ == "__main__":
    main()
