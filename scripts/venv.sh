#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv (idempotent).
# Sourced by run-main.sh and run-tests.sh. Finds a Python >= 3.12 by itself and
# reinstalls only when pyproject.toml changed (pip's cache keeps torch's wheel).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.dolfinx_lod-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"

find_python() {
    local candidates=(python3.14 python3.13 python3.12 python3)
    if command -v pyenv >/dev/null 2>&1; then
        candidates+=("$(pyenv root)"/versions/3.1[2-9]*/bin/python3.1[2-9])
    fi
    candidates+=(/usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9])
    local py
    for py in "${candidates[@]}"; do
        if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

if [ ! -x "$venv/bin/python" ]; then
    py="$(find_python)" || { echo "error: no Python >= 3.12 found (tried python3.1x and pyenv versions)" >&2; exit 1; }
    echo "creating $venv with $py" >&2
    "$py" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing dolfinx_lod and its dependencies into $venv (first time: several minutes)" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$root[wheel,test]"
    echo "$want" > "$stamp"
fi
# The wheel's start-up hook (cheap, idempotent): `import dolfinx` works before dolfinx_lod.
"$venv/bin/python" "$root/dolfinx_lod/_solver_first.py" >/dev/null
export PATH="$venv/bin:$PATH"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
