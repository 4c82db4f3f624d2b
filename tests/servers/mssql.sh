# MS SQL over TDS for the Database tests: the `iridium_server` emulator (crates.io, MIT).
#
# Source this file, then `start_mssql` installs `iridium-server` into
# $HOME/.cache/scl-tools (once; `cargo install --locked`, about 4 minutes cold, reused by
# later runs on the same machine), starts an in-memory server on a free loopback port, waits
# until it accepts TDS connections, and exports:
#   SCL_TEST_MSSQL_URL             mssql://sa:PASSWORD@127.0.0.1:PORT/master?encrypt=off
#   SCL_TEST_MSSQL_OUTAGE_URL      a second server, stopped until a test runs
#                                  `bash "$SCL_TEST_MSSQL_CONTROL" outage start|stop`; it keeps
#                                  its tables on disk, so they survive a stop and start
#   SCL_TEST_MSSQL_CONTROL         this file, usable as a command: `outage start|stop`
# `stop_mssql` stops both servers. The emulator speaks TDS 7.4 without TLS; see
# shared/docs/test-infra.md for what it does differently from SQL Server.
#
# The password is a throwaway for a loopback server that lives for one test run.

scl_mssql_tools_dir() {
    printf '%s\n' "${SCL_TOOLS:-$HOME/.cache/scl-tools}"
}

scl_mssql_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

install_mssql() {
    local tools
    tools=$(scl_mssql_tools_dir)
    if [ ! -x "$tools/bin/iridium-server" ]; then
        echo "installing iridium_server into $tools (about 4 minutes the first time)"
        cargo install --locked --quiet --root "$tools" iridium_server
    fi
}

# Start one emulator on PORT with its log in LOG, in memory or (with DATA_DIR) on disk so its
# tables survive a restart; print its pid.
scl_mssql_launch() {
    local port=$1 log=$2 data_dir=${3:-} tools storage
    tools=$(scl_mssql_tools_dir)
    if [ -n "$data_dir" ]; then
        mkdir -p "$data_dir"
        storage=(--data-dir "$data_dir")
    else
        storage=(--memory)
    fi
    nohup "$tools/bin/iridium-server" --host 127.0.0.1 --port "$port" -u sa -P "$SCL_TEST_MSSQL_PASSWORD" \
        --no-tls "${storage[@]}" >"$log" 2>&1 &
    echo $!
}

# Wait until PORT accepts TCP connections (the emulator answers TDS as soon as it listens).
scl_mssql_wait() {
    local port=$1 log=$2 deadline
    deadline=$((SECONDS + 30))
    until python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex(('127.0.0.1', $port)))" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "iridium-server did not listen on 127.0.0.1:$port within 30 s; its log:" >&2
            cat "$log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
}

start_mssql() {
    install_mssql
    local state port outage_port
    state=${SCL_TEST_STATE:-$(mktemp -d /tmp/scl-mssql.XXXXXX)}/mssql
    mkdir -p "$state"
    export SCL_TEST_MSSQL_PASSWORD='Test@12345'
    port=$(scl_mssql_free_port)
    MSSQL_PID=$(scl_mssql_launch "$port" "$state/server.log")
    scl_mssql_wait "$port" "$state/server.log"
    outage_port=$(scl_mssql_free_port)
    export MSSQL_PID
    export SCL_TEST_MSSQL_STATE="$state"
    export SCL_TEST_MSSQL_OUTAGE_PORT="$outage_port"
    # The password's `@` is %-encoded in the URLs.
    export SCL_TEST_MSSQL_URL="mssql://sa:Test%4012345@127.0.0.1:$port/master?encrypt=off"
    export SCL_TEST_MSSQL_OUTAGE_URL="mssql://sa:Test%4012345@127.0.0.1:$outage_port/master?encrypt=off"
    export SCL_TEST_MSSQL_CONTROL
    SCL_TEST_MSSQL_CONTROL="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/mssql.sh"
    echo "mssql (iridium-server): 127.0.0.1:$port (pid $MSSQL_PID); outage port $outage_port"
}

mssql_outage() {
    local action=$1 pidfile="$SCL_TEST_MSSQL_STATE/outage.pid"
    case "$action" in
        start)
            if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
                return 0
            fi
            scl_mssql_launch "$SCL_TEST_MSSQL_OUTAGE_PORT" "$SCL_TEST_MSSQL_STATE/outage.log" \
                "$SCL_TEST_MSSQL_STATE/outage-data" >"$pidfile"
            scl_mssql_wait "$SCL_TEST_MSSQL_OUTAGE_PORT" "$SCL_TEST_MSSQL_STATE/outage.log"
            ;;
        stop)
            if [ -f "$pidfile" ]; then
                kill "$(cat "$pidfile")" 2>/dev/null || true
                rm -f "$pidfile"
            fi
            ;;
        *)
            echo "usage: mssql.sh outage start|stop" >&2
            return 2
            ;;
    esac
}

stop_mssql() {
    if [ -n "${MSSQL_PID:-}" ]; then
        kill "$MSSQL_PID" 2>/dev/null || true
        MSSQL_PID=
    fi
    if [ -n "${SCL_TEST_MSSQL_STATE:-}" ]; then
        mssql_outage stop
    fi
}

# Run as a command (by a test): `mssql.sh outage start|stop`.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        outage) mssql_outage "${2:-}" ;;
        *)
            echo "usage: mssql.sh outage start|stop (the test script sources this file)" >&2
            exit 2
            ;;
    esac
fi
