#!/usr/bin/env bash
# Benchmarks side by side with what users would pick instead: builds in release mode, runs
# the script-engine comparison (tests/bench/engines: SCL, Rhai, Roto, Lua 5.4, Luau, native
# Rust) and the runtime's service benchmarks (store-and-forward, central API vs bare axum,
# ExternalSystem.Call vs bare reqwest, site RSS), and prints ONE table of medians and ratios,
# which it also writes into docs/benchmarks.md with the machine, date and commit.
#
# Not part of tests/run.sh or CI: the engine harness is its own Cargo workspace, so rhai,
# roto and mlua never enter the default build. A benchmark that fails to build or run is
# recorded in the table as such; the script goes on with the others.
#
# Environment: CARGO_TARGET_DIR (workspace, default ~/.cache/scl-target),
# SCL_BENCH_ENGINES_TARGET (engine harness, default ~/.cache/scl-target-bench-engines),
# SCL_BENCH_JOBS (cargo -j, default 2), SCL_BENCH_SKIP_SERVICES=1 to run the engines only.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export CARGO_TERM_COLOR=never
workspace_target=${CARGO_TARGET_DIR:-$HOME/.cache/scl-target}
engines_target=${SCL_BENCH_ENGINES_TARGET:-$HOME/.cache/scl-target-bench-engines}
jobs=${SCL_BENCH_JOBS:-2}
manifest=tests/bench/engines/Cargo.toml
results=$(mktemp /tmp/scl-bench-results.XXXXXX)
log=${SCL_BENCH_LOG:-/tmp/scl-bench.log}
: >"$log"
trap 'rm -f "$results"' EXIT

say() { printf '\n== %s\n' "$*" | tee -a "$log" >&2; }

# One build of the engine harness, then its run. mlua links one Lua per build, so each Lua
# is its own build (the dependencies of every feature set stay cached in the target dir).
engines() {
    local label=$1 only=$2
    shift 2
    say "engines: $label (build)"
    if ! CARGO_TARGET_DIR=$engines_target cargo build --release --locked -j "$jobs" \
        --manifest-path "$manifest" "$@" >>"$log" 2>&1; then
        printf 'ERROR\t%s\tbuild failed (see %s)\n' "engines-$label" "$log" >>"$results"
        return
    fi
    say "engines: $label (run)"
    if ! timeout 1200 "$engines_target/release/scl-bench-engines" --only "$only" \
        | tee -a "$log" | grep -E '^(BENCH|SKIP|FAIL)' >>"$results"; then
        printf 'ERROR\t%s\trun failed (see %s)\n' "engines-$label" "$log" >>"$results"
    fi
}

# One of the runtime's own benchmarks (cargo bench builds it with the release profile).
service() {
    local name=$1
    say "service: $name"
    if ! CARGO_TARGET_DIR=$workspace_target timeout 1200 cargo bench --locked -j "$jobs" \
        -p scl-runtime --bench "$name" 2>>"$log" | tee -a "$log" \
        | grep -E '^(BENCH|SKIP|FAIL)' >>"$results"; then
        printf 'ERROR\t%s\tbenchmark failed to build or run (see %s)\n' "$name" "$log" >>"$results"
    fi
}

engines "scl, native, rhai, roto" "native,scl,rhai,roto"
engines "lua 5.4" "lua54" --no-default-features --features lua54
engines "luau" "luau" --no-default-features --features luau

if [ "${SCL_BENCH_SKIP_SERVICES:-0}" != 1 ]; then
    # The central benchmark's load generator (it falls back to an in-process client).
    if ! command -v wrk >/dev/null 2>&1; then
        say "installing wrk"
        (apt-get install -y wrk || sudo apt-get install -y wrk) >>"$log" 2>&1 || true
    fi
    for name in saf central external site; do
        service "$name"
    done
fi

commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- . ':!docs/benchmarks.md' || commit="$commit (with uncommitted changes)"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
machine="Machine: $(nproc) CPUs, ${cpu:-unknown CPU}; $(date -u '+%Y-%m-%d %H:%M UTC'); commit $commit; $(rustc --version)."
say "table"
python3 tests/bench/report.py "$results" docs/benchmarks.md "$machine"
