"""The layout is the architecture: these tests keep its rules true.

Every ``import`` in the package is read from the source (module level and inside
functions alike, since a lazy import is still a dependency), and checked against
the rules of the README's layout section.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "crate_dask"

#: package -> sub-packages of crate_dask it must not import
FORBIDDEN = {
    "library": {"run", "store", "actions", "explore", "cli"},
    "features": {"run", "store", "actions", "explore", "cli", "library"},
    "store": {"run", "actions", "explore", "cli"},
    "run": {"actions", "explore", "cli"},
    "actions": {"cli", "explore"},
    "explore": {"cli"},
}
ONLY_IN_CLI = {"rich", "click"}
#: declared but not imported by crate_dask's code, and why
RUNTIME_ONLY = {
    "bokeh": "serves the Dask dashboard (distributed imports it)",
    "librosa": "the analysis library the estimators follow; used by the benchmarks' baseline (README: why not "
               "in the per-file path)",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module imported anywhere in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            # "from crate_dask.run import events" imports the module crate_dask.run.events
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
GRAPH = {m: {i for i in imports_of(p) if i in MODULES and i != m} for m, p in MODULES.items()}


def sub_package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PKG / parts[1]).is_dir()) else None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_packages_import_only_what_their_layer_may(module):
    own = sub_package(module)
    bad = sorted(i for i in GRAPH[module] if sub_package(i) in FORBIDDEN.get(own, set()))
    assert not bad, f"{module} ({own}) must not import {bad}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_cli_imports_rich_and_click(module):
    third = {i.split(".")[0] for i in imports_of(MODULES[module])}
    if sub_package(module) != "cli":
        assert not third & ONLY_IN_CLI, f"{module} imports {sorted(third & ONLY_IN_CLI)}"


def test_features_do_not_read_files():
    opens = re.compile(r"\bopen\(|\.read_bytes\(|\.read_text\(|soundfile|mutagen|\bav\b")
    for m, p in MODULES.items():
        if sub_package(m) == "features":
            src = "\n".join(l for l in p.read_text().splitlines() if not l.lstrip().startswith(("#", ">>>")))
            assert not opens.search(src), f"{m} reads files"


def test_no_import_cycles():
    # Tarjan's strongly connected components over the import graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            # a package __init__ re-exporting its own module is not a cycle of design
            if len(comp) > 1 and not all(c == v or c.startswith(v + ".") or v.startswith(c + ".") for c in comp):
                cycles.append(sorted(comp))

    for m in GRAPH:
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


def _dist_name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_declared_dependencies_are_the_imported_ones():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_dist_name(r) for r in project["dependencies"]
                if "python_version" not in r or eval_marker(r)}
    top = {i.split(".")[0] for p in MODULES.values() for i in imports_of(p)}
    third = {t for t in top if t and t not in sys.stdlib_module_names and t != "crate_dask"}
    other_pythons = {_dist_name(r) for r in project["dependencies"] if "python_version" in r and not eval_marker(r)}
    dists = md.packages_distributions()
    imported = set()
    for t in third - other_pythons:   # e.g. tomli, imported only where tomllib is missing
        assert t in dists, f"crate_dask imports {t!r}, which no installed distribution provides"
        imported.update(d.lower().replace("_", "-") for d in dists[t])
    missing = imported - declared
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
    unused = declared - imported - set(RUNTIME_ONLY)
    assert not unused, f"declared but never imported: {sorted(unused)}"


def eval_marker(req: str) -> bool:
    from packaging.requirements import Requirement

    return Requirement(req).marker is None or Requirement(req).marker.evaluate()
