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
    "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2 || return 1
    local target="$root"
    [ -n "$extras" ] && target="$root[$extras]"
    "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$target" >&2 \
        || { echo "slee: installing the dependencies failed; see the pip output above" >&2; return 1; }
    echo "$want" > "$stamp"
    echo "slee: environment ready." >&2
}
