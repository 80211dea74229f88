"""The import-layer check: layers talk downward only, and no import cycle hides anywhere.

Every import in the five packages is read from the source (``ast``), those inside functions
included: a late import is how a cycle or an upward dependency hides. The rules:

    harness.cli  ->  harness  ->  slurm  ->  jobs  ->  db
    dashboards   ->  db

- ``db`` imports none of the others; ``jobs`` only ``db``; ``slurm`` only ``jobs`` and ``db``;
  ``dashboards`` only ``db``; ``harness`` may import anything below it, and ``dashboards`` only
  from its command line (``harness.cli``, which launches the app).
- Nothing but ``harness.cli`` imports ``harness.cli``.
- ``db`` and ``dashboards`` never import torch (the dashboard and the database layer stay light).
- The module graph has no cycle.

The check is also run on a copy of the tree with a planted upward import and a planted cycle,
so a test that can only pass is not what guards the layers.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("db", "jobs", "slurm", "harness", "dashboards")

#: package -> the packages it may import (itself always allowed).
ALLOWED = {
    "db": set(),
    "jobs": {"db"},
    "slurm": {"jobs", "db"},
    "dashboards": {"db"},
    "harness": {"slurm", "jobs", "db"},
}
CLI = "harness.cli"
HEAVY = {"torch", "transformers", "peft"}
LIGHT_PACKAGES = ("db", "dashboards")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path) -> set[str]:
    """The absolute names of every module ``path`` imports, at any depth of the file."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.add(stem)
            # ``from pkg import mod`` imports the module pkg.mod where it is one.
            found.update(f"{stem}.{alias.name}" for alias in node.names)
    return found


def graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports (names that are not modules are dropped)."""
    files = {module_name(root, p): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    return {mod: {t for t in imports_of(root, path) if t in files and t != mod} | _third_party(root, path)
            for mod, path in files.items()}


def _third_party(root: Path, path: Path) -> set[str]:
    return {f"!{t.split('.')[0]}" for t in imports_of(root, path) if t.split(".")[0] in HEAVY}


def _is_cli(module: str) -> bool:
    return module == CLI or module.startswith(CLI + ".")


def violations(root: Path) -> list[str]:
    edges = graph(root)
    found = []
    for mod, targets in sorted(edges.items()):
        layer = mod.split(".")[0]
        for target in sorted(targets):
            if target.startswith("!"):
                if layer in LIGHT_PACKAGES:
                    found.append(f"{mod} imports {target[1:]}: {layer}/ stays free of torch")
                continue
            other = target.split(".")[0]
            if other == layer:
                if _is_cli(target) and not _is_cli(mod):
                    found.append(f"{mod} imports {target}: only the command line imports the command line")
                continue
            if other == "dashboards" and _is_cli(mod):
                continue
            if other not in ALLOWED[layer]:
                found.append(f"{mod} imports {target}: {layer}/ may import only "
                             f"{', '.join(sorted(ALLOWED[layer])) or 'nothing of the project'}")
    found.extend(f"import cycle: {' -> '.join(c)}" for c in cycles(edges))
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w.startswith("!") or w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    # A package importing its own submodules through __init__ and back is how Python packages
    # are built, not a tangle: drop components that are only a package and its children.
    return [c + [c[0]] for c in components if not _package_and_children(c)]


def _package_and_children(component: list[str]) -> bool:
    shortest = min(component, key=len)
    return all(m == shortest or m.startswith(shortest + ".") for m in component) and \
        all(m.rpartition(".")[0] == shortest or m == shortest for m in component)


def test_the_tree_keeps_its_layers():
    assert violations(ROOT) == []


def _copy(tmp_path: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.png"))
    return tmp_path


def _plant(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n\ndef _planted():\n    {line}\n", encoding="utf-8")


def test_a_planted_upward_import_is_caught(tmp_path):
    root = _copy(tmp_path)
    _plant(root / "db" / "schema.py", "from jobs import queue")
    _plant(root / "jobs" / "retry.py", "import harness.grid")
    _plant(root / "dashboards" / "charts.py", "from jobs import states")
    found = violations(root)
    assert "db.schema imports jobs.queue: db/ may import only nothing of the project" in found
    assert any(v.startswith("jobs.retry imports harness.grid") for v in found)
    assert any(v.startswith("dashboards.charts imports jobs.states") for v in found)


def test_a_planted_cycle_and_torch_in_db_are_caught(tmp_path):
    root = _copy(tmp_path)
    _plant(root / "db" / "clock.py", "import db.stats")
    _plant(root / "db" / "stats.py", "from db import clock")
    _plant(root / "db" / "errors.py", "import torch")
    found = violations(root)
    assert "import cycle: db.clock -> db.stats -> db.clock" in found, found
    assert "db.errors imports torch: db/ stays free of torch" in found


def test_relative_imports_resolve(tmp_path):
    pkg = tmp_path / "jobs" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "jobs" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from ..b import thing\nfrom .. import c\n")
    assert imports_of(tmp_path, pkg / "a.py") >= {"jobs.b", "jobs.b.thing", "jobs", "jobs.c"}
    assert imports_of(tmp_path, pkg / "__init__.py") >= {"jobs.sub", "jobs.sub.a"}
