#!/usr/bin/env bash
# Run a command inside the project's virtual environment, creating it first when missing.
# The CPU build of torch (torch==2.13.0) is installed before the package, so pip never
# pulls a multi-GB CUDA build; then the package with its test extra, in editable mode.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.ebreg-installed"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    "$venv/bin/python" -m pip install -q "torch==2.13.0"
  fi
  "$venv/bin/python" -m pip install -q -e "$root[test]"
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
exec "$@"
