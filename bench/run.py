#!/usr/bin/env python3
"""lumo's benchmarks (issue "the spine"): each figure, its target, and the ratio to the target.

    bench/run.py                  # builds `lumo` in release mode, then measures
    bench/run.py --lumo PATH      # measure an existing binary
    bench/run.py --lumo PATH --before OLD [--before-rev 15aa6e6]
                                  # and an older lumo in the same run (figure 5, TypeScript, only
                                  # for the newer one): both medians, after/before and its interval

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

How samples are taken: every figure is sampled in rounds, and a round runs each command of the
figure once -- after, before and the baseline (`sh -c true`, `node -e`) -- in an order that
alternates (ABC, CBA, ABC, ...). A burst of load on this shared machine then lands on both
binaries alike instead of on whichever happened to be measured during it, and a figure that
subtracts a baseline subtracts the one taken in the same round. With --before each figure shows
both medians, after/before, and a 90 % interval of that ratio (rounds resampled, fixed seed); the
verdict says "slower"/"faster" only when the whole interval is above/below 1. The exit code still
says whether the newer lumo meets every target.
"""

import argparse
import json
import math
import os
import random
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
    # Both packages in one build, always: built alone, each unifies the workspace's features
    # differently and the next build of the pair rebuilds everything.
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "lumo-cli", "-p", "lumo-runner"],
                   cwd=REPO, check=True)
    return target / "release" / "lumo"


def run_ms(cmd, cwd=None, env=None) -> float:
    """Wall-clock milliseconds of one run of `cmd`, output discarded; a failure stops the bench."""
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - start) * 1000


def rounds(probes: dict, runs: int, warmup: int = 2) -> dict:
    """Each probe's samples, taken round by round: every round calls every probe once, in an
    order reversed from one round to the next, so no probe always runs first, or always right
    after another, or always during the same burst of someone else's load."""
    for _ in range(warmup):
        for probe in probes.values():
            probe()
    keys = list(probes)
    samples = {key: [] for key in keys}
    for i in range(runs):
        for key in keys if i % 2 == 0 else reversed(keys):
            samples[key].append(probes[key]())
    return samples


def timed(cmd, runs, cwd=None, env=None, warmup=2):
    """The median of `runs` runs of `cmd` alone (kept for the other bench scripts)."""
    return statistics.median(rounds({"cmd": lambda: run_ms(cmd, cwd, env)}, runs, warmup)["cmd"])


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


class Subject:
    """One lumo binary under test with its own projects (stores are never shared: a newer lumo
    migrates an older one's store)."""

    def __init__(self, name: str, lumo: str, example: Path, typescript: bool):
        self.name, self.lumo, self.example, self.typescript = name, lumo, example, typescript

    def prepare(self, root: Path, history_rows: int):
        env = bench_env()
        quiet = dict(cwd=None, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def deploy(project: Path):
            subprocess.run([self.lumo, "deploy", "--env", "dev"], **dict(quiet, cwd=project))

        # 1. one manual-only no-op task, deployed once.
        self.one = root / "one"
        self.one.mkdir(parents=True)
        (self.one / "lumo.config.js").write_text(
            "export default { projectName: 'bench', environment: 'dev', tasks: { noop: { runOn: [] } } };\n")
        write_task(self.one, "noop")
        deploy(self.one)
        # 2. ten no-op tasks (every one runs: runOn defaults to deploy and update).
        self.ten = root / "ten"
        self.ten.mkdir()
        (self.ten / "lumo.config.js").write_text("export default { projectName: 'bench', environment: 'dev' };\n")
        for i in range(10):
            write_task(self.ten, f"noop-{i:02}")
        # 4. the same project as 1 with a million runs in its store (its own copy, so that
        # figure 1's runs are recorded in a store of the size they always were).
        self.history = root / "history"
        self.history.mkdir()
        (self.history / "lumo.config.js").write_text((self.one / "lumo.config.js").read_text())
        write_task(self.history, "noop")
        deploy(self.history)
        subprocess.run([self.lumo, "run", "noop", "--env", "dev"], **dict(quiet, cwd=self.history))
        fill(self.history / ".lumo" / "lumo.db", history_rows)
        out = subprocess.run([self.lumo, "history", "--env", "dev", "--limit", "50", "--json"], cwd=self.history,
                             env=env, capture_output=True, text=True, check=True)
        assert len(json.loads(out.stdout)["runs"]) == 50
        # 5. a TypeScript handler, bundled by the deploy.
        self.ts = None
        if self.typescript:
            self.ts = root / "ts"
            (self.ts / "functions" / "tasks").mkdir(parents=True)
            (self.ts / "lumo.config.js").write_text(
                "export default { projectName: 'bench', environment: 'dev', tasks: { 'hello-ts': { runOn: [] } } };\n")
            (self.ts / "functions" / "tasks" / "hello-ts.ts").write_text(
                "export const run = async (ctx: { deployment: { environment: string } }) => {\n"
                "  console.log('hello');\n"
                "  return { success: true, message: `hello ${ctx.deployment.environment}` };\n"
                "};\n")
            deploy(self.ts)

    def config_load_ms(self) -> float:
        """Config load timed inside the process (LUMO_LOG=lumo=debug prints it)."""
        out = subprocess.run([self.lumo, "tasks", "--config", str(self.example)],
                             env=dict(bench_env(), LUMO_LOG="lumo=debug"), capture_output=True, text=True, check=True)
        m = re.search(r"config loaded in ([0-9.]+)ms", out.stderr)
        if not m:
            sys.exit(f"no config timing in {self.lumo}'s debug output:\n{out.stderr}")
        return float(m.group(1))


class Figure:
    """A figure's per-round values for each subject, its target, and a note per subject."""

    def __init__(self, name: str, target: float):
        self.name, self.target = name, target
        self.values: dict[str, list[float]] = {}
        self.notes: dict[str, str] = {}


def measure(subjects: list, runs: int, history_rows: int) -> list:
    env = bench_env()
    figures = []
    med = statistics.median

    # 1. manual run overhead over the bare process (the one of the same round).
    fig = Figure("lumo run noop - sh -c true", 20.0)
    probes = {s.name: (lambda s=s: run_ms([s.lumo, "run", "noop", "--env", "dev", "--quiet"], s.one, env))
              for s in subjects}
    probes["bare"] = lambda: run_ms(["sh", "-c", "true"])
    samples = rounds(probes, runs)
    for s in subjects:
        fig.values[s.name] = [r - b for r, b in zip(samples[s.name], samples["bare"])]
        fig.notes[s.name] = f"lumo run {med(samples[s.name]):.1f} ms, sh -c true {med(samples['bare']):.1f} ms"
    figures.append(fig)

    # 2. a deploy of 10 no-op tasks (wall clock, whole process).
    fig = Figure("deploy of 10 no-op tasks", 150.0)
    samples = rounds({s.name: (lambda s=s: run_ms([s.lumo, "deploy", "--env", "dev", "--quiet", "--deploy-version", "b"],
                                                  s.ten, env)) for s in subjects}, max(15, runs // 2))
    for s in subjects:
        fig.values[s.name] = samples[s.name]
    figures.append(fig)

    # 3. config load, timed inside the process, and the whole `lumo tasks` process around it.
    fig = Figure("config load (lumo.config.example.js)", 10.0)
    probes = {}
    for s in subjects:
        probes[("load", s.name)] = s.config_load_ms
        probes[("whole", s.name)] = lambda s=s: run_ms([s.lumo, "tasks", "--config", str(s.example)], env=env)
    samples = rounds(probes, runs)
    for s in subjects:
        fig.values[s.name] = samples[("load", s.name)]
    figures.append(fig)
    whole = Figure("  whole `lumo tasks` process (no target)", math.inf)
    whole.values = {s.name: samples[("whole", s.name)] for s in subjects}
    figures.append(whole)

    # 4. history over a million runs (whole process).
    fig = Figure(f"history --limit 50 over {history_rows:,} runs", 50.0)
    samples = rounds({s.name: (lambda s=s: run_ms([s.lumo, "history", "--env", "dev", "--limit", "50"], s.history, env))
                      for s in subjects}, runs)
    for s in subjects:
        fig.values[s.name] = samples[s.name]
    figures.append(fig)

    # 5. a manual run of a TypeScript handler over the bare Node.js doing the same work
    # (only for a lumo that has handlers).
    with_ts = [s for s in subjects if s.ts is not None]
    if with_ts:
        fig = Figure("lumo run hello-ts - node -e", 40.0)
        probes = {s.name: (lambda s=s: run_ms([s.lumo, "run", "hello-ts", "--env", "dev", "--quiet"], s.ts, env))
                  for s in with_ts}
        probes["node"] = lambda: run_ms(["node", "-e", "console.log('hello'); "
                                         "JSON.stringify({ success: true, message: 'hello dev' })"])
        samples = rounds(probes, runs)
        for s in with_ts:
            fig.values[s.name] = [r - n for r, n in zip(samples[s.name], samples["node"])]
            fig.notes[s.name] = f"lumo run {med(samples[s.name]):.1f} ms, node -e {med(samples['node']):.1f} ms"
        figures.append(fig)
    return figures


def ratio_interval(after: list, before: list, draws: int = 2000) -> tuple:
    """A 90 % interval of median(after) / median(before), resampling whole rounds (a round's
    two samples stay together: they shared the machine's load)."""
    rng = random.Random(8)
    n = len(after)
    ratios = []
    for _ in range(draws):
        picks = [rng.randrange(n) for _ in range(n)]
        b = statistics.median(before[i] for i in picks)
        ratios.append(statistics.median(after[i] for i in picks) / b if b > 0 else math.inf)
    ratios.sort()
    return ratios[int(0.05 * draws)], ratios[int(0.95 * draws) - 1]


def report(figures: list, subjects: list, runs: int) -> int:
    med = statistics.median
    failed = False
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"({runs} rounds per figure, 15+ for the deploy; load average now {load})")
    if len(subjects) == 1:
        print(f"{'figure':<48} {'measured':>10} {'target':>8} {'ratio':>7}")
    else:
        print(f"{'figure':<48} {'after':>9} {'before':>9} {'after/before (90%)':>24} {'target':>8} {'ratio':>7}")
    for fig in figures:
        after = med(fig.values["after"])
        ratio = after / fig.target
        failed |= ratio > 1
        target = f"{fig.target:>6.0f}ms {ratio:>6.2f}x" if fig.target != math.inf else f"{'':>8} {'':>7}"
        if len(subjects) == 1 or "before" not in fig.values:
            before_cols = "" if len(subjects) == 1 else f" {'':>9} {'':>24}"
            print(f"{fig.name:<48} {after:>7.1f}ms{before_cols} {target}  {fig.notes.get('after', '')}")
            continue
        before = med(fig.values["before"])
        low, high = ratio_interval(fig.values["after"], fig.values["before"])
        verdict = "slower" if low > 1 else "faster" if high < 1 else "same"
        change = f"{after / before:.2f} ({low:.2f}-{high:.2f}) {verdict}"
        print(f"{fig.name:<48} {after:>7.1f}ms {before:>7.1f}ms {change:>24} {target}")
        for s in subjects:
            if fig.notes.get(s.name):
                print(f"{'':<6}{s.name}: {fig.notes[s.name]}")
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lumo", type=Path, help="the lumo binary (default: build it in release mode)")
    parser.add_argument("--before", type=Path, help="an older lumo binary measured in the same rounds")
    parser.add_argument("--before-rev", default="15aa6e6", help="the commit --before was built from")
    parser.add_argument("--runs", type=int, help="rounds per figure (default 30, 60 with --before)")
    parser.add_argument("--history-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    runs = args.runs or (60 if args.before else 30)
    lumo = str((args.lumo or build_release()).resolve())
    subjects = [Subject("after", lumo, REPO / "lumo.config.example.js", typescript=True)]
    with tempfile.TemporaryDirectory(prefix="lumo-bench-") as tmp:
        tmp = Path(tmp)
        if args.before:
            # The older lumo loads the example config of its own time (today's has keys it refuses).
            old = tmp / "before-example"
            old.mkdir()
            archive = subprocess.run(["git", "archive", args.before_rev, "lumo.config.example.js", "functions"],
                                     cwd=REPO, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
            subjects.append(Subject("before", str(args.before.resolve()), old / "lumo.config.example.js",
                                    typescript=False))
            print(f"after: {lumo}\nbefore: {subjects[1].lumo} (example config of {args.before_rev})")
        for s in subjects:
            s.prepare(tmp / s.name, args.history_rows)
        figures = measure(subjects, runs, args.history_rows)
    sys.exit(report(figures, subjects, runs))


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
