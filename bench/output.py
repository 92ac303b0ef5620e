#!/usr/bin/env python3
"""Benchmarks of a task's output path (issue 10, "Speed"): each figure next to its baseline
measured in the same run, and their ratio.

    bench/output.py                          # builds `lumo` in release mode, then measures
    bench/output.py --lumo PATH              # measure an existing binary
    bench/output.py --lumo NEW --before OLD  # also measure OLD in the same run (before/after)

Figures (medians, wall clock, whole `lumo run` process):
  1. 100 MB of short lines, `lumo run --quiet`        baseline `cat FILE`        goal >= 200 MB/s
  2. the same, streamed to a pipe (stderr | cat)      baseline `cat FILE | cat`  goal >= 100 MB/s
  3. 10 M lines (`seq 10000000`, 78 MB), streamed     baseline `cat FILE | cat`  goal <= 1 s
  4. `lumo logs RUN` of that 100 MB run: peak RSS, text and --json   goal <= 32 MB (text)

The machine's load average is printed with the figures: on a shared machine they move with it.
It needs about 500 MB in the temp dir (TMPDIR=/dev/shm keeps it off a small disk).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import bench_env, build_release  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MB = 1_000_000




def seconds(shell: str, runs: int, cwd=None, env=None) -> float:
    """Median wall-clock seconds of `sh -c shell`, stdout and stderr discarded unless redirected.
    Each run's log is deleted after it: a hundred-megabyte log per run fills a small disk."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(["sh", "-c", shell], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - start)
        if cwd is not None:
            for log in (Path(cwd) / ".lumo" / "logs").glob("*.log"):
                log.unlink()
    return statistics.median(samples)


def peak_rss_mb(cmd, cwd, env) -> float:
    out = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, check=True)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    if not m:
        sys.exit(f"no peak RSS in /usr/bin/time's output:\n{out.stderr[-2000:]}")
    return int(m.group(1)) / 1024


def project(root: Path, files: dict, lumo: str, env) -> Path:
    """A project with one manual-only task per file, each printing its file with `cat`."""
    root.mkdir()
    tasks = ", ".join(f"'{name}': {{ runOn: [] }}" for name in files)
    (root / "lumo.config.js").write_text(
        f"export default {{ projectName: 'bench-output', environment: 'dev', tasks: {{ {tasks} }} }};\n")
    for name, path in files.items():
        task = root / "functions" / "tasks" / f"{name}.sh"
        task.parent.mkdir(parents=True, exist_ok=True)
        task.write_text(f"#!/bin/sh\nexec cat '{path}'\n")
        task.chmod(0o755)
    subprocess.run([lumo, "deploy", "--env", "dev", "--quiet"], cwd=root, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return root


def last_run_id(lumo: str, root: Path, env) -> str:
    out = subprocess.run([lumo, "history", "--env", "dev", "--limit", "1", "--json"], cwd=root, env=env,
                         capture_output=True, text=True, check=True)
    m = re.search(r'"id":\s*"([0-9A-Z]{26})"', out.stdout)
    if not m:
        sys.exit(f"no run id in `lumo history --json`:\n{out.stdout[:2000]}")
    return m.group(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lumo", type=Path, help="the lumo binary (default: build it in release mode)")
    parser.add_argument("--before", type=Path, help="an older lumo binary, measured in the same run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    binaries = [("after", str((args.lumo or build_release()).resolve()))]
    if args.before:
        binaries.insert(0, ("before", str(args.before.resolve())))
    env = bench_env()
    rows = []

    with tempfile.TemporaryDirectory(prefix="lumo-bench-output-") as tmp:
        tmp = Path(tmp)
        short = tmp / "short-lines.txt"
        with open(short, "wb") as f:
            line = b"a short line of output, number %07d\n"
            chunk = b"".join(line % i for i in range(10_000))
            while f.tell() < 100 * MB:
                f.write(chunk)
            f.truncate(100 * MB)
        counted = tmp / "seq.txt"
        subprocess.run(f"seq 10000000 > '{counted}'", shell=True, check=True)
        short_mb = short.stat().st_size / MB
        counted_mb = counted.stat().st_size / MB

        for label, lumo in binaries:
            root = project(tmp / label, {"short": short, "counted": counted}, lumo, env)
            run = f"'{lumo}' run {{task}} --env dev"
            figures = [
                (f"{short_mb:.0f} MB short lines, --quiet", "MB/s", short_mb, 200,
                 run.format(task="short") + " --quiet", f"cat '{short}'"),
                (f"{short_mb:.0f} MB short lines, streamed to a pipe", "MB/s", short_mb, 100,
                 run.format(task="short") + " 2>&1 | cat", f"cat '{short}' | cat"),
                (f"10 M lines ({counted_mb:.0f} MB), streamed to a pipe", "s", None, 1.0,
                 run.format(task="counted") + " 2>&1 | cat", f"cat '{counted}' | cat"),
            ]
            for name, unit, size, goal, cmd, base in figures:
                load = os.getloadavg()[0]
                took = seconds(cmd, args.runs, cwd=root, env=env)
                base_took = seconds(base, args.runs)
                if unit == "MB/s":
                    value, base_value, met = size / took, size / base_took, size / took >= goal
                    goal_text = f">= {goal} MB/s"
                else:
                    value, base_value, met = took, base_took, took <= goal
                    goal_text = f"<= {goal} s"
                rows.append((label, name, value, unit, base_value, took / base_took, goal_text, met,
                             f"lumo {took:.2f} s, baseline {base_took:.2f} s, load {load:.1f}"))

            # `lumo logs` of the 100 MB run: its peak memory, text and --json, against `cat`'s.
            subprocess.run(run.format(task="short") + " --quiet", shell=True, cwd=root, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            run_id = last_run_id(lumo, root, env)
            cat_rss = peak_rss_mb(["cat", str(short)], root, env)
            for mode, extra, goal in (("text", [], 32), ("--json", ["--json"], None)):
                load = os.getloadavg()[0]
                rss = peak_rss_mb([lumo, "logs", run_id, *extra], root, env)
                rows.append((label, f"lumo logs of {short_mb:.0f} MB, peak RSS, {mode}", rss, "MB", cat_rss,
                             rss / cat_rss, f"<= {goal} MB" if goal else "-", goal is None or rss <= goal,
                             f"baseline: cat's peak RSS, load {load:.1f}"))

    print(f"{'':<7}{'figure':<46} {'measured':>14} {'baseline':>14} {'ratio':>8}  {'goal':<14}")
    failed = False
    for label, name, value, unit, base, ratio, goal, met, note in rows:
        failed |= label == "after" and not met
        print(f"{label:<7}{name:<46} {value:>9.2f} {unit:<4} {base:>9.2f} {unit:<4} {ratio:>7.2f}x  "
              f"{goal:<14} {'met' if met else 'MISSED'}  ({note})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
