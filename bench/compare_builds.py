#!/usr/bin/env python3
"""Before and after: two or more builds of the filter's .wasm as the same benchmark arm, side by
side, so an optimisation is judged on the whole request in Envoy, not only on its phase timings.

    bench/compare_builds.py --envoy ENVOY --upstream BENCH_UPSTREAM [--arm C] [--size 1024] \
        BEFORE.wasm AFTER.wasm [...]
    bench/compare_builds.py --smoke ...   # each build starts, forwards and refuses as the arm must

One Envoy per build (`--concurrency 1` on CPU 0, as in bench/run.py), interleaved rounds that
rotate the order, medians. Envoy CPU µs per request at a fixed rate every build sustains (oha,
open loop) and saturated (wrk). This VM moves ±3–5 µs between runs: differences smaller than
that need more rounds before they mean anything.
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import run as bench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envoy", type=Path, required=True)
    parser.add_argument("--upstream", type=Path, required=True)
    parser.add_argument("--arm", default="C", choices=["B", "C"],
                        help="the benchmark arm (policy) every build runs")
    parser.add_argument("--size", type=int, default=1024, help="tools/call body size, bytes")
    parser.add_argument("--rate", type=float, default=3000, help="req/s of the fixed-rate runs")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("builds", nargs="+", type=Path, help=".wasm files to compare")
    args = parser.parse_args()
    names = [str(build) for build in args.builds]
    if len(set(names)) != len(names):
        parser.error("each build once")
    with tempfile.TemporaryDirectory(prefix="mcp-policy-compare-") as tmp:
        workdir = Path(tmp)
        started = []
        try:
            upstream = bench.Process([str(args.upstream)], bench.CLIENT_CPU, stdout=subprocess.PIPE,
                                     text=True)
            started.append(upstream)
            upstream_port = int(re.search(r":(\d+)/", upstream.popen.stdout.readline()).group(1))
            envoys = {}
            for index, build in enumerate(args.builds):
                directory = workdir / f"build-{index}"
                directory.mkdir()
                envoys[str(build)] = bench.Envoy(args.envoy, args.arm, build, build, upstream_port,
                                                 directory)
                started.append(envoys[str(build)])
            for envoy in envoys.values():
                envoy.wait_ready()
                bench.check_arm(envoy, args.size)
            if args.smoke:
                print(f"compare-builds smoke: {len(envoys)} build(s) as arm {args.arm} forward an "
                      f"allowed call and refuse blocked_tool at {args.size} B")
                return 0
            script = workdir / "post.lua"
            script.write_text(bench.WRK_SCRIPT)
            body = workdir / "body.json"
            body.write_bytes(bench.tools_call_body(args.size))
            for name in names:
                # Warm: the first seconds of a fresh Envoy cost more (as in bench/run.py).
                bench.run_wrk(envoys[name], body, script, 1, 32)
            fixed = {name: [] for name in names}
            saturated = {name: [] for name in names}
            for round_ in range(args.rounds):
                order = names[round_ % len(names):] + names[:round_ % len(names)]
                for name in order:
                    fixed[name].append(bench.run_oha(envoys[name], body, args.seconds, args.rate, 32)
                                       ["cpu_us_per_request_equal_rate"])
                    saturated[name].append(bench.run_wrk(envoys[name], body, script, args.seconds,
                                                         32)["cpu_us_per_request"])
            print(f"arm {args.arm}, {args.size} B, {args.rounds} interleaved rounds of "
                  f"{args.seconds:g} s; Envoy CPU µs per request, median (each round)")
            print(f"| build | .wasm bytes | saturated | at {args.rate:g} req/s |")
            print("|---|---:|---:|---:|")
            for name, build in zip(names, args.builds):
                print(f"| {name} | {build.stat().st_size:,} | "
                      f"{statistics.median(saturated[name]):.1f} "
                      f"({' '.join(f'{x:.1f}' for x in saturated[name])}) | "
                      f"{statistics.median(fixed[name]):.1f} "
                      f"({' '.join(f'{x:.1f}' for x in fixed[name])}) |")
            return 0
        finally:
            for process in reversed(started):
                process.stop()


if __name__ == "__main__":
    sys.exit(main())
