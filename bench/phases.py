#!/usr/bin/env python3
"""Where a request's time goes inside the filter: arms B and C of the benchmark, run with a
.wasm built with the `phase-timing` feature, which logs the mean µs per request of each phase
every 20,000 requests. Prints one table (phase × arm and body size) and saves it next to the
benchmark's results.

    bench/phases.py --envoy ENVOY --wasm PHASE_TIMING_WASM --upstream BENCH_UPSTREAM

Each clock read is a host call too (its cost is printed); phases that are not timed (Envoy's
own work, entering and leaving the VM) are what separates these sums from the benchmark's CPU
per request.
"""

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import run as bench

REPORT = re.compile(r"phase µs/request over (\d+) requests: (.*) \(clock read ([\d.]+)\)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envoy", type=Path, required=True)
    parser.add_argument("--wasm", type=Path, required=True, help="built with --features phase-timing")
    parser.add_argument("--upstream", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--sizes", default="200,1024,10240")
    parser.add_argument("--out", type=Path, default=bench.HERE / "results")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    arms = ["B", "C"]
    columns = {}
    with tempfile.TemporaryDirectory(prefix="mcp-policy-phases-") as tmp:
        workdir = Path(tmp)
        script = workdir / "post.lua"
        script.write_text(bench.WRK_SCRIPT)
        upstream = bench.Process([str(args.upstream)], bench.CLIENT_CPU, stdout=subprocess.PIPE, text=True)
        try:
            upstream_port = int(re.search(r":(\d+)/", upstream.popen.stdout.readline()).group(1))
            for arm in arms:
                for size in sizes:
                    # A fresh Envoy per column, so each report covers this body size only.
                    envoy = bench.Envoy(args.envoy, arm, args.wasm, args.wasm, upstream_port,
                                        workdir)
                    try:
                        envoy.wait_ready()
                        bench.check_arm(envoy, size)
                        body = workdir / f"body-{size}.json"
                        body.write_bytes(bench.tools_call_body(size))
                        result = bench.run_wrk(envoy, body, script, args.seconds, 32)
                    finally:
                        envoy.stop()
                    reports = REPORT.findall(Path(envoy.log.name).read_text(errors="replace"))
                    if not reports:
                        raise RuntimeError(f"arm {arm} {size} B: no phase report (fewer than "
                                           f"20,000 requests in {args.seconds:g} s?)")
                    _, phases, clock = reports[-1]
                    values = dict(item.split("=") for item in phases.split())
                    values["clock read (each)"] = clock
                    if "allocations" in values:
                        values["heap allocations per request (a count)"] = values.pop("allocations")
                    values["Envoy CPU per request"] = f"{result['cpu_us_per_request']:.1f}"
                    columns[(arm, size)] = values
                    print(f"{arm} {size} B: {phases}", file=sys.stderr)
        finally:
            upstream.stop()
    names = list(next(iter(columns.values())))
    header = "| phase (µs per request) | " + " | ".join(f"{a} {s} B" for a, s in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(columns[key][name] for key in columns) + " |")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "phases.md").write_text(
        "Phases of arms B (allow-all) and C (a limit that never trips), `make bench-phases` "
        f"({args.seconds:g} s of wrk per column, Envoy `--concurrency 1`).\n\n" + table + "\n")
    print(f"\nsaved {args.out / 'phases.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
