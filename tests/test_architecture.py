"""The architecture holds by construction: every stage depends on the code it runs, and the
layers of ``baac_severity`` point one way."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.imports import PACKAGE, ROOT, closure, module_name, source_files

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]

# A module may import from its own layer and the layers before it, never from a later one.
LAYERS = [
    {"config", "data"},
    {"features"},
    {"modeling"},
    {"decisions", "monitoring"},
    {"serving", "dashboard"},
    {"cli", "testing"},
]


def stage_module(stage: dict) -> str:
    command = stage["cmd"].split()
    assert command[:2] == ["python", "-m"], f"a stage runs a module of {PACKAGE}: {stage['cmd']}"
    return command[2]


def missing_deps(stage: dict) -> list[str]:
    """The project files the stage's command executes that its ``deps`` do not cover (a dep
    that is a folder covers everything below it)."""
    deps = [Path(d) for d in stage.get("deps", [])]
    return sorted(
        str(f)
        for f in source_files(stage_module(stage))
        if not any(f == d or d in f.parents for d in deps)
    )


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_stage_depends_on_the_code_it_imports(name: str) -> None:
    missing = missing_deps(STAGES[name])
    assert not missing, (
        f"dvc.yaml stage {name!r} runs these modules without listing them as deps, so "
        f"`dvc status` would not see them change: {', '.join(missing)}"
    )


def test_a_removed_dep_is_named() -> None:
    """The check itself: dropping any code dep (a module, or a layer's folder) from a stage is
    reported, naming the modules it covered."""
    for name, stage in STAGES.items():
        for dep in [d for d in stage["deps"] if d.startswith(f"{PACKAGE}/")]:
            trimmed = {**stage, "deps": [d for d in stage["deps"] if d != dep]}
            missing = missing_deps(trimmed)
            assert missing, f"{name}: {dep} covers nothing the stage imports"
            assert all(m == dep or m.startswith(f"{dep}/") for m in missing), (dep, missing)


def test_function_level_imports_count() -> None:
    """Imports inside functions run too (promote imports the model store only where it loads
    a model): the closure sees them."""
    assert f"{PACKAGE}.modeling.model_store" in closure(f"{PACKAGE}.decisions.promote")


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for rank, layer in enumerate(LAYERS):
        if top in layer:
            return rank
    raise AssertionError(f"{module}: not in any layer of {LAYERS}: add it to one")


def test_layers_point_one_way() -> None:
    from tests.imports import direct_imports

    wrong = []
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        module = module_name(path)
        if module == PACKAGE:
            continue
        for imported in direct_imports(module):
            if imported.count(".") and layer_of(imported) > layer_of(module):
                wrong.append(f"{module} -> {imported}")
    assert not wrong, "imports against the layers: " + "; ".join(wrong)
