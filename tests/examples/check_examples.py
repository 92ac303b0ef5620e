"""Checks the CI examples under examples/ as their CI systems would read them (run by .ci/run
with the emulator venv's Python, which has PyYAML): each file is valid YAML, the GitHub workflow
deploys on push and offers workflow_dispatch with the documented inputs, and the GitLab job
hands its JUnit report to GitLab (`artifacts: reports: junit:`). Which lumo commands and flags
they call is checked against the binary by tests/e2e_local/ci_reports.rs. actionlint lints the
GitHub workflow itself."""

import sys
from pathlib import Path

import yaml

root = Path(__file__).resolve().parents[2]
problems = []


def check(condition, message):
    if not condition:
        problems.append(message)


github_path = root / "examples/github-actions/deploy.yml"
github = yaml.safe_load(github_path.read_text())
# YAML 1.1 reads the key `on` as the boolean true.
triggers = github.get("on", github.get(True)) or {}
check("push" in triggers, f"{github_path}: no `on: push`")
inputs = (triggers.get("workflow_dispatch") or {}).get("inputs") or {}
for name in ("environment", "task", "args"):
    check(name in inputs, f"{github_path}: workflow_dispatch has no input `{name}`")
steps = [s for job in github["jobs"].values() for s in job.get("steps", [])]
runs = "\n".join(s.get("run", "") for s in steps)
check("cargo install --locked --path" in runs, f"{github_path}: lumo is not installed with cargo install --locked")
check("--junit" in runs, f"{github_path}: no --junit report")
check(any("actions/cache" in s.get("uses", "") for s in steps), f"{github_path}: no cache step")
check(any("setup-node" in s.get("uses", "") for s in steps), f"{github_path}: Node is not installed")

gitlab_path = root / "examples/gitlab-ci/.gitlab-ci.yml"
gitlab = yaml.safe_load(gitlab_path.read_text())
jobs = {k: v for k, v in gitlab.items() if isinstance(v, dict) and ("script" in v or "extends" in v)}
check({"deploy", "run-task"} <= jobs.keys(), f"{gitlab_path}: jobs {sorted(jobs)}")
for name, job in jobs.items():
    if "script" not in job:
        continue
    merged = dict(gitlab.get(job.get("extends", ""), {}))
    merged.update(job)
    junit = ((merged.get("artifacts") or {}).get("reports") or {}).get("junit")
    check(junit == "lumo-junit.xml", f"{gitlab_path}: job `{name}` reports junit {junit!r}")
    check(any("--junit lumo-junit.xml" in line for line in merged["script"]), f"{gitlab_path}: job `{name}` writes no JUnit report")

for p in problems:
    print(f"check_examples: {p}", file=sys.stderr)
print(f"check_examples: {'FAILED' if problems else 'ok'}: 2 files, {len(problems)} problems")
sys.exit(1 if problems else 0)
