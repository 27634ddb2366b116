# Sourced by bin/slee and bin/test: create or refresh .venv from pyproject.toml.
# Usage: slee_venv EXTRAS   (EXTRAS is "" or "dev")

# The interpreter for a new .venv: $SLEE_PYTHON if set, else the first Python >= 3.11 that
# can make a virtualenv among python3 on PATH and the system's, preferring one whose binary
# is not linked against a shared libpython. A CPython built with --enable-shared (pyenv's
# default) calls its own core through the PLT and is built without PGO/LTO; Debian's
# /usr/bin/python3.11 ran this server's REGISTER path 6-15 % faster (docs/performance.md).
slee_python() {
    if [ -n "${SLEE_PYTHON:-}" ]; then echo "$SLEE_PYTHON"; return; fi
    local cand exe first=""
    for cand in python3 /usr/bin/python3 /usr/local/bin/python3; do
        command -v "$cand" >/dev/null 2>&1 || continue
        exe="$("$cand" -c 'import sys, venv, ensurepip; print(sys.executable) if sys.version_info >= (3, 11) else sys.exit(1)' 2>/dev/null)" || continue
        [ -n "$exe" ] || continue
        [ -n "$first" ] || first="$exe"
        if command -v ldd >/dev/null 2>&1 && ! ldd "$exe" 2>/dev/null | grep -q libpython; then
            echo "$exe"; return
        fi
    done
    echo "${first:-python3}"
}

slee_venv() {
    local root extras stamp want py=""
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    extras="$1"
    stamp="$root/.venv/.slee-stamp"
    want="$(cat "$root/pyproject.toml" | sha256sum | cut -c1-16)-${extras:-base}"
    if [ -f "$stamp" ] && { [ "$(cat "$stamp")" = "$want" ] || { [ -z "$extras" ] && grep -q -- "-dev$" "$stamp" && [ "$(cut -d- -f1 "$stamp")" = "${want%%-*}" ]; }; }; then
        return 0
    fi
    echo "slee: preparing the Python environment in $root/.venv (first run only) ..." >&2
    if [ ! -x "$root/.venv/bin/python" ]; then
        py="$(slee_python)"  # only here: it starts a few interpreters
        if ! command -v "$py" >/dev/null 2>&1; then
            echo "slee: SLEE_PYTHON=$py is not a program here; point it at a Python 3.11+ or unset it" >&2
            return 1
        fi
        echo "slee:   creating .venv with $py" >&2
        "$py" -m venv "$root/.venv" || { echo "slee: could not create a virtualenv with $py (install python3-venv, or set SLEE_PYTHON)" >&2; return 1; }
    fi
    local target="$root" log="$root/.venv/pip-install.log"
    [ -n "$extras" ] && target="$root[$extras]"
    echo "slee:   installing dependencies (pip output in $log) ..." >&2
    { "$root/.venv/bin/python" -m pip install --disable-pip-version-check --upgrade pip \
        && "$root/.venv/bin/python" -m pip install --disable-pip-version-check -e "$target"; } >"$log" 2>&1 \
        || { tail -n 30 "$log" >&2; echo "slee: installing the dependencies failed; the full pip output is in $log" >&2; return 1; }
    echo "$want" > "$stamp"
    echo "slee: environment ready." >&2
}
