#!/usr/bin/env bash
# The whole test suite: installs what the tests need, starts every server they
# talk to on loopback, runs formatting, lint and all tests, and stops the
# servers again. Works on a fresh machine of the project's kind (Debian, Rust
# toolchain with cargo-nextest) and is what CI runs (`.ci/run`).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/scl-target}
export CARGO_TERM_COLOR=never
# Servers and their state live here for the run and are removed afterwards.
export SCL_TEST_STATE=${SCL_TEST_STATE:-$(mktemp -d /tmp/scl-tests.XXXXXX)}

log() { printf '\n== %s\n' "$*"; }

pids=()
cleanup() {
    for pid in "${pids[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    # Servers that need more than a kill (database clusters and their folders).
    if declare -F stop_postgres >/dev/null; then stop_postgres || true; fi
    if declare -F stop_mssql >/dev/null; then stop_mssql || true; fi
    if declare -F stop_httpbin >/dev/null; then stop_httpbin || true; fi
    rm -rf "$SCL_TEST_STATE"
}
trap cleanup EXIT

log "toolchain"
cargo --version
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy || true

log "format"
cargo fmt --all --check

log "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "build"
cargo build --workspace --all-targets --locked

# --- servers ---
# Every integration test talks to a real server started here on loopback. Each
# tests/servers/<name>.sh defines start_<name> (install once, start, wait until ready,
# export SCL_TEST_* variables) and stop_<name>; the cleanup trap stops them via `pids`.
log "servers"
source tests/servers/oauth.sh
start_oauth
pids+=("$oauth_pid")
source tests/servers/smtp.sh
start_smtp
pids+=("$smtp_pid")

# Database module: PostgreSQL (Debian's packages) and MS SQL (the iridium_server TDS emulator).
source tests/servers/postgres.sh
start_postgres
source tests/servers/mssql.sh
start_mssql

# Language server: headless Neovim (PyPI) as a real LSP client.
source tests/servers/nvim.sh
start_nvim

# ExternalSystem module: httpbin under gunicorn (PyPI) as the HTTP peer.
source tests/servers/httpbin.sh
start_httpbin

# Central failover: haproxy (Debian's package) in front of several central nodes.
source tests/servers/haproxy.sh
start_haproxy

# Webhooks: a receiver verifying Standard Webhooks signatures with `standardwebhooks` (PyPI).
source tests/servers/webhooks.sh
start_webhooks

log "tests"
# Every test, in parallel processes; a failure prints its output and fails the run.
cargo nextest run --workspace --locked --no-fail-fast
cargo test --workspace --doc --locked
