#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS each, one at a time (`make fuzz`, `make
# fuzz-smoke`). Each target's corpus grows in fuzz/corpus/TARGET (not committed), seeded from
# fuzz/seeds/TARGET; libFuzzer's output goes to fuzz/logs/TARGET.log and its final stats are
# printed here. Exits non-zero if any target found a crash (the input is in fuzz/artifacts/TARGET/).
#
#   FUZZ_SECONDS    time per target (default 300)
#   FUZZ_TARGETS    which targets (default: all of fuzz/Cargo.toml)
#   FUZZ_MAX_LEN    longest input in bytes (default 65536)
#   FUZZ_TIMEOUT    one input taking longer than this many seconds is a failure (default 10)
#   FUZZ_SANITIZER  none (default: the engine has no unsafe code, and ASan cuts execs/s about 6x)
#                   or address
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-300}
max_len=${FUZZ_MAX_LEN:-65536}
timeout=${FUZZ_TIMEOUT:-10}
targets=${FUZZ_TARGETS:-$(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' Cargo.toml | grep -v '^mcp-')}
# Debug assertions also turn on overflow checks: an overflow is a finding, not a wrap.
flags=(--debug-assertions --sanitizer "${FUZZ_SANITIZER:-none}")

# cargo-fuzz passes -Z flags to rustc: nightly, or (where no nightly can be installed) the
# default toolchain told to accept them.
if rustup toolchain list | grep -q '^nightly'; then
  cargo=(cargo +nightly)
else
  echo "fuzz: no nightly toolchain; using the default one with RUSTC_BOOTSTRAP=1"
  cargo=(env RUSTC_BOOTSTRAP=1 cargo)
fi

start=$(date +%s)
"${cargo[@]}" fuzz build "${flags[@]}"
echo "fuzz: targets built in $(($(date +%s) - start))s"

mkdir -p logs
failed=()
for target in $targets; do
  mkdir -p "corpus/$target"
  log="logs/$target.log"
  echo "fuzz: $target for ${seconds}s (log fuzz/$log)"
  if "${cargo[@]}" fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -max_len="$max_len" -timeout="$timeout" \
      -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | sed 's/^/  /'
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
      "$log" | sed 's/^/  /'
  else
    failed+=("$target")
    echo "fuzz: $target FAILED; end of its log:"
    tail -n 40 "$log" | sed 's/^/  | /'
    ls "artifacts/$target" 2>/dev/null | sed "s|^|  input: fuzz/artifacts/$target/|"
  fi
done

if ((${#failed[@]})); then
  echo "fuzz: crashes in ${failed[*]} (reproduce: cargo +nightly fuzz run ${flags[*]} TARGET fuzz/artifacts/TARGET/FILE)"
  exit 1
fi
echo "fuzz: no crash in $(echo $targets | wc -w) targets x ${seconds}s"
