#!/usr/bin/env python3
"""What Envoy's side of this filter's host calls costs, apart from the filter's own code.

The floor filter (bench/floor-filter) holds the request and reads its body (arm H of the
benchmark), then makes the host calls mcp-policy-filter makes for an allowed call, added one step
at a time, without deciding anything. Next to the steps run arms B (allow-all) and C (a limit
that never trips), the filter itself. So each step's increase is one kind of host call, priced
in Envoy CPU per request, and B (or C) minus the step with all its host calls is what running the
filter's own code costs.

    bench/host_calls.py --envoy ENVOY --wasm WASM --floor-wasm FLOOR_WASM --upstream BENCH_UPSTREAM
    bench/host_calls.py --smoke ...   # every step starts, forwards and makes its host calls
    bench/host_calls.py --report bench/results/host-calls.json   # render the table again

Interleaved rounds, medians; saturated (wrk) and at one fixed rate every arm sustains (oha).
Saved to bench/results/host-calls.md and host-calls.json.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import run as bench

# Cumulative, in the order the filter makes them; the names are the floor filter's.
STEPS = {
    "H": ("hold-body", "hold the request, read the body (arm H)"),
    "H1": ("hold-body+headers", "+ every request header, one call"),
    "H2": ("hold-body+headers+audit", "+ a 330-byte audit record stored as filter state"),
    "H3": ("hold-body+headers+audit+metric+clock", "+ one Envoy counter and the clock: B's host calls"),
    "H4": ("hold-body+headers+audit+metric+clock+shared", "+ one shared-data read and CAS write"),
    "H5": ("hold-body+headers+audit+metric+clock+shared+response",
           "+ the response headers and its buffered body: C's host calls"),
}
# The floor filter's steps are arms of the benchmark's configuration builder.
bench.FLOOR_MODES.update({step: mode for step, (mode, _) in STEPS.items()})
OURS = {"B": "H3", "C": "H5"}
ARMS = ["A", *STEPS, *OURS]
METRIC = "floor_filter_calls_total"


def counted_calls(envoy: bench.Envoy) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}/stats?filter={METRIC}",
                                timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"{METRIC}: (\d+)$", text, re.M)
    return int(match.group(1)) if match else 0


def smoke(envoys: dict, size: int):
    for arm, envoy in envoys.items():
        bench.check_arm(envoy, size)
        expected = 1 if arm in STEPS and "metric" in STEPS[arm][0] else 0
        if counted_calls(envoy) != expected:
            raise RuntimeError(f"step {arm}: {METRIC} is {counted_calls(envoy)}, expected {expected}")
    print(f"host-calls smoke: steps {', '.join(STEPS)} and arms {', '.join(OURS)} forward an "
          f"allowed call; the steps with a metric count it")


def render(data: dict) -> str:
    recorded = all("achieved_rps" in result for result in data["sizes"].values())
    overload_note = ("an arm that answered under 95% of that rate is marked overloaded" if recorded
                     else "this run did not record the rate each arm achieved")
    lines = [
        "What mcp-policy-filter's host calls cost Envoy (`make bench-host-calls`): the floor filter "
        "makes them, one kind more per step, without deciding anything; B and C are the filter. "
        f"{data['envoy']} `--concurrency 1`, {data['rounds']} interleaved rounds of {data['seconds']:g} s "
        f"per arm and size, medians. CPU: Envoy's utime+stime per request, saturated (wrk, 32 "
        f"connections) / at {data['rate']:g} req/s (oha, open loop; {overload_note}).",
        "",
    ]
    for size, result in data["sizes"].items():
        sat, rate = result["saturated"], result["equal_rate"]
        achieved = result.get("achieved_rps", {})
        lines += [f"**{int(size):,} B bodies**", "",
                  "| arm | what it does | CPU µs/req saturated | step | at the fixed rate | step |",
                  "|---|---|---:|---:|---:|---:|"]
        previous = None
        for arm in ARMS:
            what = STEPS[arm][1] if arm in STEPS else (
                "passthrough (router only)" if arm == "A" else bench.ARMS[arm])
            step_sat = step_rate = ""
            if arm in STEPS and previous:
                step_sat = f"{sat[arm] - sat[previous]:+.1f}"
                step_rate = f"{rate[arm] - rate[previous]:+.1f}"
            if arm in OURS:
                floor = OURS[arm]
                step_sat = f"{sat[arm] - sat[floor]:+.1f} over {floor}"
                step_rate = f"{rate[arm] - rate[floor]:+.1f} over {floor}"
            overloaded = " (overloaded)" if achieved.get(arm, data["rate"]) < 0.95 * data["rate"] else ""
            lines.append(f"| {arm} | {what} | {sat[arm]:.1f} | {step_sat} | {rate[arm]:.1f}{overloaded} "
                         f"| {step_rate} |")
            previous = arm if arm in STEPS else previous
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, help="only render host-calls.md again from this JSON")
    parser.add_argument("--envoy", type=Path)
    parser.add_argument("--wasm", type=Path)
    parser.add_argument("--floor-wasm", type=Path)
    parser.add_argument("--upstream", type=Path)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=3000)
    parser.add_argument("--sizes", default="1024,10240")
    parser.add_argument("--out", type=Path, default=bench.HERE / "results")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.report:
        (args.report.parent / "host-calls.md").write_text(render(json.loads(args.report.read_text())))
        return 0
    if not (args.envoy and args.wasm and args.floor_wasm and args.upstream):
        parser.error("--envoy, --wasm, --floor-wasm and --upstream are required (unless --report)")
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="mcp-policy-host-calls-") as tmp:
        workdir = Path(tmp)
        started = []
        try:
            upstream = bench.Process([str(args.upstream)], bench.CLIENT_CPU, stdout=subprocess.PIPE,
                                     text=True)
            started.append(upstream)
            upstream_port = int(re.search(r":(\d+)/", upstream.popen.stdout.readline()).group(1))
            envoys = {}
            for arm in ARMS:
                envoys[arm] = bench.Envoy(args.envoy, arm, args.wasm, args.floor_wasm,
                                          upstream_port, workdir)
                started.append(envoys[arm])
            for envoy in envoys.values():
                envoy.wait_ready()
            if args.smoke:
                smoke(envoys, sizes[0])
                return 0
            script = workdir / "post.lua"
            script.write_text(bench.WRK_SCRIPT)
            data = {"seconds": args.seconds, "rounds": args.rounds, "rate": args.rate,
                    "envoy": bench.envoy_version(args.envoy), "sizes": {}}
            for size in sizes:
                body = workdir / f"body-{size}.json"
                body.write_bytes(bench.tools_call_body(size))
                for arm in ARMS:
                    # Warm: the first seconds of a fresh Envoy cost more (as in bench/run.py).
                    bench.run_wrk(envoys[arm], body, script, 1, 32)
                saturated = {arm: [] for arm in ARMS}
                equal_rate = {arm: [] for arm in ARMS}
                achieved = {arm: [] for arm in ARMS}
                for round_ in range(args.rounds):
                    # Spread over the rounds, each arm takes an early and a late place in turn.
                    shift = round_ * len(ARMS) // args.rounds
                    order = ARMS[shift:] + ARMS[:shift]
                    for arm in order:
                        fixed = bench.run_oha(envoys[arm], body, args.seconds, args.rate, 32)
                        equal_rate[arm].append(fixed["cpu_us_per_request_equal_rate"])
                        achieved[arm].append(fixed["achieved_rps"])
                        saturated[arm].append(bench.run_wrk(envoys[arm], body, script, args.seconds,
                                                            32)["cpu_us_per_request"])
                data["sizes"][str(size)] = {
                    "rounds": {"saturated": saturated, "equal_rate": equal_rate},
                    "saturated": {arm: bench.median(v) for arm, v in saturated.items()},
                    "equal_rate": {arm: bench.median(v) for arm, v in equal_rate.items()},
                    "achieved_rps": {arm: bench.median(v) for arm, v in achieved.items()},
                }
            report = render(data)
            print(report)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "host-calls.json").write_text(json.dumps(data, indent=1) + "\n")
            (args.out / "host-calls.md").write_text(report)
            return 0
        finally:
            for process in reversed(started):
                process.stop()


if __name__ == "__main__":
    sys.exit(main())
