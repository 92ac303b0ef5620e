#!/usr/bin/env python3
"""Issue 9's bundling figure: `lumo build` of a TS handler that imports a ~1 MB npm package.

    bench/js_bundle.py                  # builds `lumo` in release mode, then measures
    bench/js_bundle.py --lumo PATH      # measure an existing binary

The package is generated (no network): `big-lib`, CommonJS, 200 modules of ~5 KB, ~1 MB in
all, in the project's `node_modules`; CommonJS cannot be tree-shaken, so all of it is bundled.
The handler is TypeScript with an enum, a relative import and a JSON import.

Printed (medians of repeated runs, wall clock, on this machine):
  1. `lumo build` of that project (config load + bundling + zip)      target <= 150 ms
  2. the same minus `lumo build` of a project whose task is a shell script (the bundling alone)
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import bench_env, build_release  # noqa: E402

TARGET_MS = 150.0
MODULES = 200


def big_lib(root: Path) -> int:
    pkg = root / "node_modules" / "big-lib"
    (pkg / "lib").mkdir(parents=True)
    (pkg / "package.json").write_text('{"name": "big-lib", "version": "1.0.0", "main": "index.js"}\n')
    size = 0
    index = []
    for i in range(MODULES):
        # ~5 KB of distinct code per module, so nothing folds away.
        body = "\n".join(
            f"function f{i}_{j}(x) {{ const t = 'module {i} function {j} ' + x; return t.split('').reverse().join('') + {i * 100 + j}; }}"
            for j in range(40)
        )
        body += f"\nmodule.exports = {{ {', '.join(f'f{i}_{j}' for j in range(40))} }};\n"
        (pkg / "lib" / f"m{i}.js").write_text(body)
        size += len(body)
        index.append(f"Object.assign(module.exports, require('./lib/m{i}.js'));")
    (pkg / "index.js").write_text("\n".join(index) + "\n")
    return size


def project(root: Path, handler: bool) -> None:
    (root / "lumo.config.js").write_text("export default { projectName: 'bench', tasks: {} };\n")
    tasks = root / "functions" / "tasks"
    tasks.mkdir(parents=True)
    if handler:
        (tasks / "lib").mkdir()
        (tasks / "lib" / "level.ts").write_text(
            "export enum Level { Low = 1, High }\nexport const describe = (l: Level): string => `level ${Level[l]}`;\n"
        )
        (tasks / "data.json").write_text('{"name": "bench"}\n')
        (tasks / "hello.ts").write_text(
            "import { tasks } from '@lumo-framework/core';\n"
            "import { f0_0 } from 'big-lib';\n"
            "import { Level, describe } from './lib/level';\n"
            "import data from './data.json';\n"
            "export const run: tasks.TaskHandler = async (ctx) => ({\n"
            "  success: true,\n"
            "  message: `${describe(Level.High)} ${data.name} ${f0_0(ctx.deployment.environment)}`,\n"
            "});\n"
        )
    else:
        script = tasks / "hello.sh"
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)


def median_ms(cmd, cwd, env, runs, touch):
    """`cmd`'s median wall time, with `touch` rewritten before each run so the stat cache
    (.lumo/bundle-cache.json) never answers for it: what is timed is bundling, not a cache hit."""
    def changed():
        touch.write_bytes(touch.read_bytes())
    for _ in range(2):
        changed()
        subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    samples = []
    for _ in range(runs):
        changed()
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lumo", type=Path, help="an existing lumo binary (default: build release)")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    lumo = str(args.lumo or build_release())
    env = bench_env()
    with tempfile.TemporaryDirectory(prefix="lumo-bench-js-") as tmp:
        ts_root = Path(tmp) / "ts"
        sh_root = Path(tmp) / "sh"
        ts_root.mkdir()
        sh_root.mkdir()
        project(ts_root, handler=True)
        project(sh_root, handler=False)
        package_bytes = big_lib(ts_root)
        cmd = [lumo, "build", "--quiet"]
        ts = median_ms(cmd, ts_root, env, args.runs, ts_root / "functions" / "tasks" / "hello.ts")
        sh = median_ms(cmd, sh_root, env, args.runs, sh_root / "functions" / "tasks" / "hello.sh")
        bundle_size = max(z.stat().st_size for z in (ts_root / ".lumo" / "bundles").glob("*.zip"))
    print(f"package: {package_bytes / 1e6:.2f} MB of CommonJS in {MODULES} modules; bundle zip {bundle_size / 1e3:.0f} KB")
    print(f"1. lumo build, TS handler + 1 MB package: {ts:7.1f} ms   target <= {TARGET_MS:.0f} ms   ratio {ts / TARGET_MS:.2f}")
    print(f"2. of which bundling (minus a shell task's build, {sh:.1f} ms): {ts - sh:7.1f} ms")


if __name__ == "__main__":
    main()
