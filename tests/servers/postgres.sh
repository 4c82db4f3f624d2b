# PostgreSQL for the Database tests, from Debian's packages.
#
# Source this file, then `start_postgres` installs PostgreSQL if it is missing, creates a
# throwaway cluster in a fresh temporary folder (password authentication over TCP, fsync off),
# starts it on a free loopback port, waits until it accepts connections, and exports:
#   SCL_TEST_POSTGRES_URL          postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres
#   SCL_TEST_POSTGRES_OUTAGE_URL   a second cluster, initialised but stopped, for the tests that
#                                  need a server that is down and then comes up: a test runs
#                                  `bash "$SCL_TEST_POSTGRES_CONTROL" outage start|stop`
#   SCL_TEST_POSTGRES_CONTROL      this file, usable as that command
# `stop_postgres` stops both clusters and removes their folders.
#
# The password is a throwaway for loopback clusters that live for one test run.

scl_postgres_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

scl_postgres_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

# Run a PostgreSQL program as the `postgres` user when we are root (the server refuses root).
scl_postgres_as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

install_postgres() {
    if [ -z "$(scl_postgres_bin)" ]; then
        echo "installing PostgreSQL from Debian's packages"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    fi
}

# Create a cluster in a new folder; print the folder.
scl_postgres_init() {
    local bin data
    bin=$(scl_postgres_bin)
    data=$(mktemp -d /tmp/scl-postgres.XXXXXX)
    printf '%s\n' "$SCL_TEST_POSTGRES_PASSWORD" >"$data.pw"
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$data" "$data.pw"
    fi
    chmod 700 "$data"
    scl_postgres_as_owner "$bin/initdb" -D "$data" -U postgres --pwfile="$data.pw" \
        --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$data.init.log" 2>&1 || {
        echo "initdb failed; its log:" >&2
        cat "$data.init.log" >&2
        return 1
    }
    rm -f "$data.pw"
    printf '%s\n' "$data"
}

# Start the cluster in DATA on PORT and wait until it accepts connections (pg_ctl -w).
scl_postgres_start_cluster() {
    local data=$1 port=$2 bin
    bin=$(scl_postgres_bin)
    scl_postgres_as_owner "$bin/pg_ctl" -D "$data" -l "$data/server.log" \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c fsync=off" -w -t 30 start >/dev/null || {
        echo "PostgreSQL did not start on 127.0.0.1:$port; its log:" >&2
        cat "$data/server.log" >&2 || true
        return 1
    }
}

scl_postgres_stop_cluster() {
    local data=$1 bin
    bin=$(scl_postgres_bin)
    if [ -f "$data/postmaster.pid" ]; then
        scl_postgres_as_owner "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    fi
}

start_postgres() {
    install_postgres
    local port outage_port
    export SCL_TEST_POSTGRES_PASSWORD=testpw
    POSTGRES_DATA=$(scl_postgres_init)
    POSTGRES_OUTAGE_DATA=$(scl_postgres_init)
    port=$(scl_postgres_free_port)
    scl_postgres_start_cluster "$POSTGRES_DATA" "$port"
    outage_port=$(scl_postgres_free_port)
    export POSTGRES_DATA POSTGRES_OUTAGE_DATA
    export SCL_TEST_POSTGRES_OUTAGE_PORT="$outage_port"
    export SCL_TEST_POSTGRES_URL="postgres://postgres:$SCL_TEST_POSTGRES_PASSWORD@127.0.0.1:$port/postgres"
    export SCL_TEST_POSTGRES_OUTAGE_URL="postgres://postgres:$SCL_TEST_POSTGRES_PASSWORD@127.0.0.1:$outage_port/postgres"
    export SCL_TEST_POSTGRES_CONTROL
    SCL_TEST_POSTGRES_CONTROL="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/postgres.sh"
    echo "postgres: 127.0.0.1:$port ($POSTGRES_DATA); outage cluster on port $outage_port"
}

postgres_outage() {
    case "$1" in
        start) scl_postgres_start_cluster "$POSTGRES_OUTAGE_DATA" "$SCL_TEST_POSTGRES_OUTAGE_PORT" ;;
        stop) scl_postgres_stop_cluster "$POSTGRES_OUTAGE_DATA" ;;
        *)
            echo "usage: postgres.sh outage start|stop" >&2
            return 2
            ;;
    esac
}

stop_postgres() {
    local data
    for data in "${POSTGRES_DATA:-}" "${POSTGRES_OUTAGE_DATA:-}"; do
        if [ -n "$data" ] && [ -d "$data" ]; then
            scl_postgres_stop_cluster "$data"
            rm -rf "$data" "$data.init.log"
        fi
    done
    POSTGRES_DATA=
    POSTGRES_OUTAGE_DATA=
}

# Run as a command (by a test): `postgres.sh outage start|stop`.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        outage) postgres_outage "${2:-}" ;;
        *)
            echo "usage: postgres.sh outage start|stop (the test script sources this file)" >&2
            exit 2
            ;;
    esac
fi
