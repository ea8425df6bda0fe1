"""The package's layers: the library below, the orchestrators (quickstart, reproduce, bench) and the CLI above.

Building blocks (models, attacks, data, prompts, losses, methods) import neither training nor evaluation;
evaluation does not import training; no library package imports bench, the orchestrators or ``pmgaft.cli``.
Checked twice: statically, every ``import``/``from`` statement of every module (also those inside functions), and
dynamically, by importing each layer's modules in a fresh interpreter, lowest first, and reading ``sys.modules``.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pmgaft

PACKAGE = Path(pmgaft.__file__).parent
ABOVE_LIBRARY = ("pmgaft.bench", "pmgaft.quickstart", "pmgaft.reproduce", "pmgaft.cli")
# the library's layers, lowest first: (packages, the modules they must never import)
LAYERS = (
    (("pmgaft.models", "pmgaft.attacks", "pmgaft.defences", "pmgaft.data", "pmgaft.prompts", "pmgaft.losses",
      "pmgaft.methods"),
     ("pmgaft.training", "pmgaft.evaluation", *ABOVE_LIBRARY)),
    (("pmgaft.evaluation",), ("pmgaft.training", *ABOVE_LIBRARY)),
    (("pmgaft.training",), ABOVE_LIBRARY),
)
FORBIDDEN = {package: forbidden for packages, forbidden in LAYERS for package in packages}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module an ``import``/``from`` statement anywhere in ``source`` names (relative ones resolved)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[:len(module.split(".")) - node.level + is_package]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pmgaft import cli`
    return names


def violations(module: str, names: set[str]) -> list[str]:
    """The imports of ``module`` that break the layering (``FORBIDDEN``), as 'module imports name' lines."""
    rules = [bad for package, bad in FORBIDDEN.items() if module == package or module.startswith(package + ".")]
    return sorted(f"{module} imports {name}" for name in names for bad in rules for forbidden in bad
                  if name == forbidden or name.startswith(forbidden + "."))


def test_the_checker_catches_a_forbidden_import():
    late = "def run():\n    from pmgaft.training import train\n"
    assert violations("pmgaft.evaluation.grid", imported_names(late, "pmgaft.evaluation.grid")) == [
        "pmgaft.evaluation.grid imports pmgaft.training", "pmgaft.evaluation.grid imports pmgaft.training.train"]
    relative = "from ..bench import costs\nfrom .. import cli\n"
    assert violations("pmgaft.evaluation.report", imported_names(relative, "pmgaft.evaluation.report")) == [
        "pmgaft.evaluation.report imports pmgaft.bench", "pmgaft.evaluation.report imports pmgaft.bench.costs",
        "pmgaft.evaluation.report imports pmgaft.cli"]
    assert violations("pmgaft.methods", imported_names("import pmgaft.cli", "pmgaft.methods", True)) == [
        "pmgaft.methods imports pmgaft.cli"]
    assert violations("pmgaft.models.loading", {"pmgaft.evaluation.grid", "pmgaft.utils"}) == [
        "pmgaft.models.loading imports pmgaft.evaluation.grid"]
    assert violations("pmgaft.training.loop", {"pmgaft.bench", "pmgaft.models"}) == [
        "pmgaft.training.loop imports pmgaft.bench"]
    # allowed: the orchestrators import what they orchestrate; cli_args is not the CLI
    assert violations("pmgaft.reproduce.command", {"pmgaft.training", "pmgaft.bench.costs"}) == []
    assert violations("pmgaft.evaluation.cli", {"pmgaft.cli_args", "pmgaft.data"}) == []


def test_no_module_imports_across_the_layers():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        found += violations(module, imported_names(path.read_text(), module, path.name == "__init__.py"))
    assert found == []


def _forbidden_loaded(loaded: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)]


def test_importing_the_library_loads_nothing_above_it():
    """Every library module imported in a fresh interpreter, layer by layer, lowest first."""
    script = f"""
import importlib, json, pkgutil, sys
loaded = []
for packages in {[list(packages) for packages, _ in LAYERS]!r}:
    for package in packages:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(getattr(root, "__path__", []), package + "."):
            importlib.import_module(info.name)
    loaded.append(sorted(m for m in sys.modules if m.startswith("pmgaft.")))
print(json.dumps(loaded))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.splitlines()[-1])
    assert "pmgaft.methods.pmg_aft" in loaded[0] and "pmgaft.evaluation.cli" in loaded[1]
    assert "pmgaft.training.loop" in loaded[2]
    for (_, forbidden), modules in zip(LAYERS, loaded):
        assert _forbidden_loaded(modules, forbidden) == []


@pytest.mark.parametrize("orchestrator", ["pmgaft.reproduce", "pmgaft.quickstart"])
def test_orchestrators_are_registered_commands_outside_evaluation(orchestrator):
    from pmgaft.cli import COMMANDS

    assert orchestrator in {module for module, _ in COMMANDS.values()}
    assert not (PACKAGE / "evaluation" / f"{orchestrator.rsplit('.', 1)[1]}.py").exists()
