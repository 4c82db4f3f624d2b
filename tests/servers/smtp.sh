# SMTP server for the integration tests (aiosmtpd): plain, STARTTLS and implicit-TLS ports,
# PLAIN/LOGIN, and XOAUTH2 checked against the OAuth server's introspection endpoint.
# Source this file, then call `start_smtp` after `start_oauth` (tests/servers/oauth.sh);
# `stop_smtp` stops it (tests/run.sh does both).
#
# start_smtp installs aiosmtpd into the venv $HOME/.cache/scl-venv (once), makes a small CA
# and a leaf certificate for localhost / 127.0.0.1 with openssl (rustls rejects a self-signed
# CA used as a server certificate), starts tests/servers/smtp_server.py and exports:
#   SCL_TEST_SMTP_HOST            127.0.0.1
#   SCL_TEST_SMTP_PLAIN_PORT      no TLS, AUTH in clear
#   SCL_TEST_SMTP_STARTTLS_PORT   STARTTLS required
#   SCL_TEST_SMTP_TLS_PORT        implicit TLS
#   SCL_TEST_SMTP_CA              PEM file of the CA that signed the server certificate
#   SCL_TEST_SMTP_USER / SCL_TEST_SMTP_PASSWORD   the PLAIN/LOGIN account
#   SCL_TEST_SMTP_MAILDIR         one JSON file per accepted message (see smtp_server.py)
#   SCL_TEST_SMTP_CONTROL_DIR     fault-injection switches (see smtp_server.py)
# State (certificates, mail, log) goes under $SCL_TEST_STATE/smtp.

smtp_server_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

start_smtp() {
    local venv=$HOME/.cache/scl-venv
    local state=${SCL_TEST_STATE:?SCL_TEST_STATE must be set}/smtp
    mkdir -p "$state"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" 2>/dev/null || {
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        }
    fi
    "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null || "$venv/bin/pip" install -q aiosmtpd
    command -v openssl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }

    # A CA and a leaf certificate signed by it (CA:FALSE, SAN localhost and 127.0.0.1).
    local certs=$state/certs
    mkdir -p "$certs"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=SCL test CA" \
        -keyout "$certs/ca.key" -out "$certs/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$certs/server.key" -out "$certs/server.csr" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$certs/server.ext"
    openssl x509 -req -in "$certs/server.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" \
        -CAcreateserial -days 2 -extfile "$certs/server.ext" -out "$certs/server.pem" 2>/dev/null

    export SCL_TEST_SMTP_HOST=127.0.0.1
    export SCL_TEST_SMTP_USER=alice
    export SCL_TEST_SMTP_PASSWORD=scl-smtp-test-password
    export SCL_TEST_SMTP_CA=$certs/ca.pem
    export SCL_TEST_SMTP_MAILDIR=$state/mail
    export SCL_TEST_SMTP_CONTROL_DIR=$state/control
    rm -f "$state/ready.json"
    "$venv/bin/python" "$smtp_server_dir/smtp_server.py" \
        --maildir "$SCL_TEST_SMTP_MAILDIR" --control-dir "$SCL_TEST_SMTP_CONTROL_DIR" \
        --cert "$certs/server.pem" --key "$certs/server.key" \
        --user "$SCL_TEST_SMTP_USER" --password "$SCL_TEST_SMTP_PASSWORD" \
        --introspection-url "${SCL_TEST_OAUTH_INTROSPECTION_URL:-}" \
        --introspection-client smtp-server --introspection-secret "${SCL_TEST_OAUTH_CLIENT_SECRET:-}" \
        --ready-file "$state/ready.json" >"$state/log" 2>&1 &
    smtp_pid=$!
    local deadline=$((SECONDS + 30))
    until [ -s "$state/ready.json" ]; do
        if ! kill -0 "$smtp_pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
            echo "smtp server did not start:" >&2
            cat "$state/log" >&2
            return 1
        fi
        sleep 0.1
    done
    local ports
    ports=$("$venv/bin/python" -c 'import json,sys; p=json.load(open(sys.argv[1])); print(p["plain"], p["starttls"], p["tls"])' "$state/ready.json")
    read -r SCL_TEST_SMTP_PLAIN_PORT SCL_TEST_SMTP_STARTTLS_PORT SCL_TEST_SMTP_TLS_PORT <<<"$ports"
    export SCL_TEST_SMTP_PLAIN_PORT SCL_TEST_SMTP_STARTTLS_PORT SCL_TEST_SMTP_TLS_PORT
    echo "smtp server: plain $SCL_TEST_SMTP_PLAIN_PORT, starttls $SCL_TEST_SMTP_STARTTLS_PORT, tls $SCL_TEST_SMTP_TLS_PORT (pid $smtp_pid)"
}

stop_smtp() {
    if [ -n "${smtp_pid:-}" ]; then
        kill "$smtp_pid" 2>/dev/null || true
        wait "$smtp_pid" 2>/dev/null || true
        smtp_pid=
    fi
}
