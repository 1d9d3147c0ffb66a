"""The project's own import graph, read from the source (``ast``): every ``import`` statement of
a module counts, those inside functions included, since a stage runs them all sooner or later."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from baac_severity.config import ROOT

PACKAGE = "baac_severity"


def module_file(module: str) -> Path | None:
    """The source file of ``module`` in this repository, or None for another distribution."""
    base = ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def direct_imports(module: str) -> frozenset[str]:
    """The project modules that ``module`` imports anywhere in its body."""
    path = module_file(module)
    assert path is not None, module
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import name`: name is a submodule or an attribute of pkg.
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] == PACKAGE and module_file(name):
                found.add(name)
    return frozenset(found)


def closure(module: str) -> set[str]:
    """``module`` and every project module it imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(direct_imports(current))
    return seen


def has_code(path: Path) -> bool:
    """False for a file that holds only a docstring (a package's ``__init__.py``)."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def source_files(module: str) -> set[Path]:
    """The files a stage running ``python -m module`` executes, docstring-only ones left out."""
    files = {module_file(m) for m in closure(module)}
    return {f.relative_to(ROOT) for f in files if f is not None and has_code(f)}
