# httpbin under gunicorn: the real HTTP peer of the ExternalSystem tests.
#
# Source this file, then `start_httpbin` installs httpbin and gunicorn into a
# virtualenv under $HOME/.cache/scl-venv (once), starts gunicorn on a free
# loopback port, waits until it answers, and exports SCL_TEST_HTTPBIN_URL.
# `stop_httpbin` stops it through its pid file (the `$!` of a subshell is not
# gunicorn). State lives under $SCL_TEST_STATE (or a fresh temporary folder).

scl_httpbin_venv_dir() {
    printf '%s\n' "${SCL_VENV:-$HOME/.cache/scl-venv}"
}

# A free TCP port on 127.0.0.1, chosen by the kernel.
scl_httpbin_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

install_httpbin() {
    local venv
    venv=$(scl_httpbin_venv_dir)
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" 2>/dev/null || {
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        }
    fi
    if ! "$venv/bin/python" -c 'import httpbin, gunicorn' >/dev/null 2>&1; then
        "$venv/bin/pip" install --quiet --disable-pip-version-check httpbin gunicorn
    fi
}

start_httpbin() {
    install_httpbin
    local venv state port deadline
    venv=$(scl_httpbin_venv_dir)
    state=${SCL_TEST_STATE:-$(mktemp -d /tmp/scl-httpbin.XXXXXX)}/httpbin
    mkdir -p "$state"
    port=$(scl_httpbin_free_port)
    HTTPBIN_PIDFILE="$state/gunicorn.pid"
    "$venv/bin/gunicorn" --daemon -b "127.0.0.1:$port" -w 2 -k gthread --threads 8 \
        -p "$HTTPBIN_PIDFILE" --error-logfile "$state/error.log" httpbin:app
    deadline=$((SECONDS + 30))
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/get" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "httpbin did not answer on 127.0.0.1:$port within 30 s; its log:" >&2
            cat "$state/error.log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    export HTTPBIN_PIDFILE
    export SCL_TEST_HTTPBIN_URL="http://127.0.0.1:$port"
    echo "httpbin: $SCL_TEST_HTTPBIN_URL (pid $(cat "$HTTPBIN_PIDFILE"))"
}

stop_httpbin() {
    if [ -n "${HTTPBIN_PIDFILE:-}" ] && [ -f "$HTTPBIN_PIDFILE" ]; then
        kill "$(cat "$HTTPBIN_PIDFILE")" 2>/dev/null || true
        rm -f "$HTTPBIN_PIDFILE"
    fi
}
