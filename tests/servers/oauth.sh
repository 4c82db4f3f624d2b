# OAuth 2.0 client-credentials server for the integration tests (npm `oidc-provider`).
# Source this file, then call `start_oauth`; `stop_oauth` stops it (tests/run.sh does both).
#
# start_oauth installs oidc-provider into $HOME/.cache/scl-node (once), starts
# tests/servers/oauth_server.mjs on a free loopback port and exports:
#   SCL_TEST_OAUTH_URL            http://127.0.0.1:PORT (issuer)
#   SCL_TEST_OAUTH_TOKEN_URL      $SCL_TEST_OAUTH_URL/token
#   SCL_TEST_OAUTH_INTROSPECTION_URL  $SCL_TEST_OAUTH_URL/token/introspection
#   SCL_TEST_OAUTH_CLIENT_SECRET  the secret of every test client (see oauth_server.mjs)
#   SCL_TEST_OAUTH_SHORT_TTL_S    token lifetime of the `scl-notify-short-*` clients
# State (log, ready file) goes under $SCL_TEST_STATE/oauth.

oauth_server_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

start_oauth() {
    local node_dir=$HOME/.cache/scl-node
    local state=${SCL_TEST_STATE:?SCL_TEST_STATE must be set}/oauth
    mkdir -p "$node_dir" "$state"
    if [ ! -f "$node_dir/node_modules/oidc-provider/package.json" ]; then
        command -v npm >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
        (cd "$node_dir" && npm install --no-audit --no-fund --silent oidc-provider@9) >/dev/null
    fi
    # ES modules resolve packages next to the script, so it runs from the install folder.
    cp "$oauth_server_dir/oauth_server.mjs" "$node_dir/oauth_server.mjs"
    export SCL_TEST_OAUTH_CLIENT_SECRET=scl-oauth-test-secret
    export SCL_TEST_OAUTH_SHORT_TTL_S=3
    rm -f "$state/ready.json"
    OAUTH_CLIENT_SECRET=$SCL_TEST_OAUTH_CLIENT_SECRET OAUTH_READY_FILE=$state/ready.json \
        OAUTH_SHORT_TTL_S=$SCL_TEST_OAUTH_SHORT_TTL_S \
        node "$node_dir/oauth_server.mjs" >"$state/log" 2>&1 &
    oauth_pid=$!
    local deadline=$((SECONDS + 30))
    until [ -s "$state/ready.json" ]; do
        if ! kill -0 "$oauth_pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
            echo "oauth server did not start:" >&2
            cat "$state/log" >&2
            return 1
        fi
        sleep 0.1
    done
    local port
    port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$state/ready.json")
    export SCL_TEST_OAUTH_URL=http://127.0.0.1:$port
    export SCL_TEST_OAUTH_TOKEN_URL=$SCL_TEST_OAUTH_URL/token
    export SCL_TEST_OAUTH_INTROSPECTION_URL=$SCL_TEST_OAUTH_URL/token/introspection
    echo "oauth server: $SCL_TEST_OAUTH_URL (pid $oauth_pid)"
}

stop_oauth() {
    if [ -n "${oauth_pid:-}" ]; then
        kill "$oauth_pid" 2>/dev/null || true
        wait "$oauth_pid" 2>/dev/null || true
        oauth_pid=
    fi
}
