# Sourced by bin/slee and bin/test: create or refresh .venv from pyproject.toml.
# Usage: slee_venv EXTRAS   (EXTRAS is "" or "dev")
slee_venv() {
    local root extras stamp want py
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    extras="$1"
    py="${SLEE_PYTHON:-python3}"
    stamp="$root/.venv/.slee-stamp"
    want="$(cat "$root/pyproject.toml" | sha256sum | cut -c1-16)-${extras:-base}"
    if [ -f "$stamp" ] && { [ "$(cat "$stamp")" = "$want" ] || { [ -z "$extras" ] && grep -q -- "-dev$" "$stamp" && [ "$(cut -d- -f1 "$stamp")" = "${want%%-*}" ]; }; }; then
        return 0
    fi
    echo "slee: preparing the Python environment in $root/.venv (first run only) ..." >&2
    if [ ! -x "$root/.venv/bin/python" ]; then
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
