#!/usr/bin/env bash
# Are the declared lower bounds true? Installs ebreg with every dependency of pyproject.toml at
# its declared minimum (a pip constraints file made from the ">=" bounds) in a fresh virtual
# environment, then runs a smoke subset of the tests there.
#
#   scripts/check-floors.sh [VENV_DIR]      (default: a temporary folder; needs the package index)
#   EBREG_FLOOR_TORCH=2.4.1 scripts/check-floors.sh    (torch at its declared floor too)
#
# torch is installed first as torch==$EBREG_FLOOR_TORCH, by default 2.13.0 (the CPU build served
# locally); its declared floor is a build from the package index with CUDA libraries (several
# GB), so it is checked only when asked for.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$(mktemp -d)/floors}"
constraints="$(mktemp)"
python3 - "$root/pyproject.toml" > "$constraints" <<'EOF'
import re, sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
for dep in deps:
    name, floor = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([^,;\s]+)", dep).groups()
    if name != "torch":
        print(f"{name}=={floor}")
EOF
echo "constraints:"; sed 's/^/  /' "$constraints"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q "torch==${EBREG_FLOOR_TORCH:-2.13.0}"
"$venv/bin/python" -m pip install -q -c "$constraints" -e "$root[test]"
"$venv/bin/python" -m pip list 2>/dev/null | grep -iE "^(torch|lightning|numpy|scipy|scoringrules|matplotlib|scikit-learn|safetensors|pandas) "
cd "$root"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_contract.py tests/test_engine.py \
    tests/test_model_file.py tests/test_metrics.py tests/test_inference.py tests/test_layout.py \
    tests/test_estimators.py tests/test_cli.py -k "not sklearn_compatible"
