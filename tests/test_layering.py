"""The house layering rule: search/ never imports torch, transformers or ray (nor the packages
that do); training/ never imports ray; only ray_jobs/ does. Checked on the source (every import
statement, those inside functions included) and on what importing each module loads."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {"search": {"torch", "transformers", "ray", "training", "ray_jobs"},
             "training": {"ray", "ray_jobs"}}


def _imported_roots(file: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_statement_crosses_the_layers(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files
    crossings = {str(f.relative_to(REPO)): sorted(_imported_roots(f) & FORBIDDEN[package]) for f in files}
    assert {f: c for f, c in crossings.items() if c} == {}


def test_the_scan_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import torch.nn\n    from ray import tune\n")
    assert _imported_roots(probe) == {"torch", "ray"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_importing_every_module_loads_no_forbidden_package(package):
    code = (f"import importlib, pkgutil, sys, {package}\n"
            f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
            "    importlib.import_module(m.name)\n"
            f"print(sorted(set(m.split('.')[0] for m in sys.modules) & set({sorted(FORBIDDEN[package])!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "[]"
