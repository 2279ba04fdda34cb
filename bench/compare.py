#!/usr/bin/env python3
"""Before and after, side by side: builds of the filter (.wasm or native module), policy changes,
and the benchmark's other arms, so a change is judged on the whole request in Envoy, not only on its
phase timings.

    bench/compare.py --envoy ENVOY --upstream BENCH_UPSTREAM [--arm C] [--size 1024] VARIANT...
    bench/compare.py ... --size 1024,10240 VARIANT...   # sizes interleaved too, and what the
                                                        # larger body costs over the smaller
    bench/compare.py --smoke ...   # each variant starts, forwards and refuses as its arm must

A VARIANT is one of
  - a .wasm file, run as `--arm` (B, C, or a result guard arm: Q, R, U) with that arm's policy and calls: `before.wasm`;
  - the same with top-level members of the policy replaced (JSON after `@`):
    `dist/mcp_policy_filter.wasm@{"audit":{"hash_arguments":false}}`;
  - a native module (.so), run as the native arm with the same policy (NB or NC), `@` as
    above: `dist/libmcp_policy_native.so`;
  - a letter of bench/run.py's arms that needs no extra process (A, W, H, D, E, L): `E`.

One Envoy per variant (`--concurrency 1` on CPU 0, as in bench/run.py), a warm-up, then
interleaved rounds that rotate the order, medians. Envoy CPU µs per request saturated (wrk) and
at a fixed rate (oha, open loop). On this VM two copies of one build came out 6 µs apart:
compare two copies of the same build first to see how much a difference has to be to count.
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import run as bench

# Arms of bench/run.py that run with Envoy alone (no processor, service or floor filter needed
# beyond the .wasm files given).
PLAIN_ARMS = {"A", "D", "E", "L"}
FLOOR_ARMS = set(bench.FLOOR_MODES)


def parse_variant(text: str, arm: str):
    """(arm, .wasm or None, native module or None, policy changes or None) for one VARIANT."""
    if text in PLAIN_ARMS | FLOOR_ARMS:
        return text, None, None, None
    path, _, changes = text.partition("@")
    if not path.endswith((".wasm", ".so")):
        raise ValueError(f"{text!r}: neither a .wasm file, a native module (.so) nor one of the "
                         f"arms {''.join(sorted(PLAIN_ARMS | FLOOR_ARMS))}")
    try:
        policy_changes = json.loads(changes) if changes else None
    except json.JSONDecodeError as error:
        raise ValueError(f"{text!r}: the policy changes after @ are not JSON ({error}); in "
                         f"`make bench-compare`, write them without spaces") from error
    if not Path(path).is_file():
        raise ValueError(f"{text!r}: no file {path}")
    if policy_changes is not None and not isinstance(policy_changes, dict):
        raise ValueError(f"{text!r}: the policy changes after @ must be a JSON object")
    if path.endswith(".so"):
        native_arm = next(n for n, w in bench.NATIVE_ARMS.items() if w == arm)
        return native_arm, None, Path(path), policy_changes
    return arm, Path(path), None, policy_changes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envoy", type=Path, required=True)
    parser.add_argument("--upstream", type=Path, required=True)
    parser.add_argument("--arm", default="C", choices=["B", "C", *bench.GUARD_ARMS],
                        help="the benchmark arm (policy) every .wasm variant runs (a .so "
                             "variant runs its native twin, NB, NC, NQ, NR or NU)")
    parser.add_argument("--floor-wasm", type=Path,
                        help="bench/floor-filter's .wasm, for the floor arms W and H")
    parser.add_argument("--size", default="1024",
                        help="tools/call body size in bytes; several, comma-separated, are "
                             "interleaved in the same rounds, and each variant's difference "
                             "between the largest and the smallest is printed")
    parser.add_argument("--rate", type=float, default=3000, help="req/s of the fixed-rate runs")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("variants", nargs="+", help="what to compare (see above)")
    args = parser.parse_args()
    try:
        sizes = [int(size) for size in args.size.split(",")]
    except ValueError:
        parser.error(f"--size {args.size!r}: body sizes in bytes, comma-separated")
    if len(set(sizes)) != len(sizes):
        parser.error("each size once")
    names = args.variants
    if len(set(names)) != len(names):
        parser.error("each variant once")
    try:
        variants = {name: parse_variant(name, args.arm) for name in names}
    except ValueError as error:
        parser.error(str(error))
    if any(arm in FLOOR_ARMS for arm, _, _, _ in variants.values()) and not args.floor_wasm:
        parser.error("the floor arms need --floor-wasm")
    # Arms without a .wasm of their own still need a path for the configuration builder.
    any_wasm = next((wasm for _, wasm, _, _ in variants.values() if wasm), args.floor_wasm)
    with tempfile.TemporaryDirectory(prefix="mcp-policy-compare-") as tmp:
        workdir = Path(tmp)
        started = []
        try:
            upstream = bench.Process([str(args.upstream)], bench.CLIENT_CPU, stdout=subprocess.PIPE,
                                     text=True)
            started.append(upstream)
            upstream_port = int(re.search(r":(\d+)/", upstream.popen.stdout.readline()).group(1))
            envoys = {}
            for index, (name, (arm, wasm, native, policy_changes)) in enumerate(variants.items()):
                directory = workdir / f"variant-{index}"
                directory.mkdir()
                envoys[name] = bench.Envoy(args.envoy, arm, wasm or any_wasm,
                                           args.floor_wasm or any_wasm, upstream_port, directory,
                                           policy_changes=policy_changes, native=native)
                started.append(envoys[name])
            for envoy in envoys.values():
                envoy.wait_ready()
                for size in sizes:
                    bench.check_arm(envoy, size)
            if args.smoke:
                print(f"compare smoke: {', '.join(names)} forward an allowed call (and those that "
                      f"decide refuse blocked_tool) at {', '.join(f'{s} B' for s in sizes)}")
                return 0
            script = workdir / "post.lua"
            script.write_text(bench.WRK_SCRIPT)
            bodies = {}
            for size in sizes:
                bodies[size] = workdir / f"body-{size}.json"
                bodies[size].write_bytes(bench.arm_body(args.arm, size))
            for name in names:
                # Warm: the first seconds of a fresh Envoy cost more (as in bench/run.py).
                bench.run_wrk(envoys[name], bodies[sizes[0]], script, 1, 32)
            # A variant's sizes run one after the other: each round's difference between them is
            # measured in the same conditions.
            runs = [(name, size) for name in names for size in sizes]
            fixed = {run: [] for run in runs}
            achieved = {run: [] for run in runs}
            saturated = {run: [] for run in runs}
            for round_ in range(args.rounds):
                shift = round_ * len(runs) // args.rounds
                for name, size in runs[shift:] + runs[:shift]:
                    result = bench.run_oha(envoys[name], bodies[size], args.seconds, args.rate, 32)
                    fixed[name, size].append(result["cpu_us_per_request_equal_rate"])
                    achieved[name, size].append(result["achieved_rps"])
                    saturated[name, size].append(bench.run_wrk(
                        envoys[name], bodies[size], script, args.seconds, 32)["cpu_us_per_request"])
            for size in sizes:
                print(f"{size} B bodies (.wasm variants as arm {args.arm}, .so variants as its native "
                      f"twin), {args.rounds} interleaved "
                      f"rounds of {args.seconds:g} s; Envoy CPU µs per request, median (each round); "
                      f"overloaded: answered under 95% of the fixed rate")
                print(f"| variant | module bytes | saturated | at {args.rate:g} req/s |")
                print("|---|---:|---:|---:|")
                for name, (_, wasm, native, _) in variants.items():
                    module = wasm or native
                    wasm_size = f"{module.stat().st_size:,}" if module else "—"
                    run = (name, size)
                    overloaded = statistics.median(achieved[run]) < 0.95 * args.rate
                    print(f"| {name} | {wasm_size} | "
                          f"{statistics.median(saturated[run]):.1f} "
                          f"({' '.join(f'{x:.1f}' for x in saturated[run])}) | "
                          f"{statistics.median(fixed[run]):.1f}"
                          f"{' (overloaded)' if overloaded else ''} "
                          f"({' '.join(f'{x:.1f}' for x in fixed[run])}) |")
                print()
            if len(sizes) > 1:
                small, large = min(sizes), max(sizes)
                print(f"What a {large} B body costs over a {small} B one (Envoy CPU µs per "
                      f"request): the median of each round's difference (the two sizes ran one "
                      f"after the other), and the differences")
                print(f"| variant | saturated | at {args.rate:g} req/s |")
                print("|---|---:|---:|")
                for name in names:
                    cells = []
                    for values in (saturated, fixed):
                        pairs = [b - a for a, b in zip(values[name, small], values[name, large])]
                        cells.append(f"{statistics.median(pairs):+.1f} "
                                     f"({' '.join(f'{x:+.1f}' for x in pairs)})")
                    print(f"| {name} | {cells[0]} | {cells[1]} |")
                print()
            print(bench.noise_sentence((bench.spread(saturated[run]), f"{run[0]} at {run[1]} B")
                                       for run in runs))
            return 0
        finally:
            for process in reversed(started):
                process.stop()


if __name__ == "__main__":
    sys.exit(main())
