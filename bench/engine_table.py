#!/usr/bin/env python3
"""The engine micro-benchmarks' results as one table (`make bench-engine` runs it after
`cargo bench`): criterion's median per benchmark, with its 95% confidence interval, read from
the estimates criterion saves, and written to bench/results/engine.md.

    bench/engine_table.py [--criterion-dir target/criterion] [--out bench/results/engine.md]
"""

import argparse
import datetime
import json
from pathlib import Path


def microseconds(ns: float) -> str:
    return f"{ns / 1000:.2f}"


def rows(criterion_dir: Path):
    for benchmark in sorted(criterion_dir.glob("*/**/new/benchmark.json")):
        meta = json.loads(benchmark.read_text())
        estimates = json.loads((benchmark.parent / "estimates.json").read_text())
        median = estimates["median"]
        interval = median["confidence_interval"]
        yield (meta["group_id"], meta.get("function_id") or "", median["point_estimate"],
               interval["lower_bound"], interval["upper_bound"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--criterion-dir", type=Path, default=Path("target/criterion"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/engine.md"))
    args = parser.parse_args()
    found = list(rows(args.criterion_dir))
    if not found:
        raise SystemExit(f"no criterion results under {args.criterion_dir}")
    lines = [
        f"Engine micro-benchmarks, natively (`make bench-engine`, {datetime.date.today()}): "
        "criterion's median time per call, µs, with its 95% confidence interval.",
        "",
        "| group | benchmark | median µs | 95% interval |",
        "|---|---|---:|---|",
    ]
    for group, function, median, low, high in found:
        lines.append(f"| {group} | {function} | {microseconds(median)} "
                     f"| {microseconds(low)}–{microseconds(high)} |")
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
