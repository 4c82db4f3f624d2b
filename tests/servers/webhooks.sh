# The webhook receiver of runtime/tests/webhooks.rs: a Python receiver that verifies
# Standard Webhooks signatures with the PyPI package `standardwebhooks` (independent of
# SCL's own signer).
#
# Source this file, then `start_webhooks` installs `standardwebhooks` into the virtualenv
# under $HOME/.cache/scl-venv (once; the one httpbin.sh uses) and exports
# SCL_TEST_WEBHOOK_PYTHON (that venv's python) and SCL_TEST_WEBHOOK_RECEIVER (the script).
# The tests start receivers themselves, each with its own failure injection; there is
# nothing to stop.

scl_webhooks_venv_dir() {
    printf '%s\n' "${SCL_VENV:-$HOME/.cache/scl-venv}"
}

install_webhooks() {
    local venv
    venv=$(scl_webhooks_venv_dir)
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" 2>/dev/null || {
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        }
    fi
    if ! "$venv/bin/python" -c 'import standardwebhooks' >/dev/null 2>&1; then
        "$venv/bin/pip" install --quiet --disable-pip-version-check standardwebhooks
    fi
}

start_webhooks() {
    install_webhooks
    local venv here
    venv=$(scl_webhooks_venv_dir)
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    export SCL_TEST_WEBHOOK_PYTHON="$venv/bin/python"
    export SCL_TEST_WEBHOOK_RECEIVER="$here/webhook_receiver.py"
    echo "webhooks: receiver $SCL_TEST_WEBHOOK_RECEIVER with $SCL_TEST_WEBHOOK_PYTHON"
}
