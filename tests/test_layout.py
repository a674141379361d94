"""The package's floors: what imports what, and what importing costs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import get_args

from ebreg import methods
from ebreg.config import METHODS, JointMethod, MDNMethod

PACKAGE = Path(__file__).resolve().parents[1] / "ebreg"


def _imported_modules(path: Path) -> set[str]:
    """The modules a file imports, as absolute ``ebreg...`` names (relative imports resolved)."""
    package = ["ebreg", *path.relative_to(PACKAGE).parent.parts]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def test_the_core_never_imports_the_app_layer_and_model_files_import_no_estimator() -> None:
    core = [p for p in PACKAGE.rglob("*.py") if "app" not in p.relative_to(PACKAGE).parts]
    assert len(core) > 15
    for path in core:
        assert not any(m.startswith("ebreg.app") for m in _imported_modules(path)), path
    assert not any("estimators" in m for m in _imported_modules(PACKAGE / "model_file.py"))


def test_the_registry_holds_every_method_and_the_engine_names_none() -> None:
    assert tuple(methods.REGISTRY) == METHODS
    assert {m for m in METHODS if methods.get(m).test_model == "ebm"} == set(get_args(JointMethod))
    assert {m for m in METHODS if methods.get(m).test_model == "mdn"} == set(get_args(MDNMethod))
    engine = (PACKAGE / "engine.py").read_text()
    assert not [m for m in METHODS if f'"{m}"' in engine or f"'{m}'" in engine]


COST = """
import sys
{code}
print(sorted(m for m in ("torch", "lightning", "sklearn", "pandas", "matplotlib") if m in sys.modules))
"""


def _heavy_modules_after(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", COST.format(code=code)], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_import_ebreg_and_the_command_lines_help_load_nothing_heavy() -> None:
    assert _heavy_modules_after("import ebreg") == "[]"
    help_calls = "from ebreg.app import cli\nfor argv in (['--help'], ['fit', '--help'], ['predict', '--help'], " \
                 "['demo', '--help'], ['--version']):\n" \
                 "    try:\n        cli.main(argv)\n    except SystemExit:\n        pass"
    assert _heavy_modules_after(help_calls) == "[]"
    assert _heavy_modules_after("from ebreg import ModelConfig, TrainConfig") == "[]"
    assert _heavy_modules_after("from ebreg import ConditionalEBM") == "['torch']"
