"""The package is laid out by stage, as the rules are: each stage's folder imports only from the
package's top (config, io, errors, cli, workflow) and from the stages before it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "arenapref"
STAGES = ("data", "model", "train", "evaluate", "kaggle")
# Programs and the benchmark use every stage; they are not a stage of their own.
USERS_OF_ALL = ("commands", "bench")


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every arenapref module `path` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("arenapref"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("arenapref"):
            if node.module.count(".") == 1 and stage_of(node.module + ".x"):
                # `from arenapref.model import heads` imports the module arenapref.model.heads.
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
    return found


def stage_of(module: str) -> str | None:
    """The stage a module belongs to; None for the package's top (what every stage uses)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in STAGES + USERS_OF_ALL else None


def layering_violations(package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        here = stage_of(module_name(path, package)) if path.name != "__init__.py" or path.parent != package else None
        if here in USERS_OF_ALL:
            continue
        rank = -1 if here is None else STAGES.index(here)
        for module in sorted(imported_modules(path)):
            there = stage_of(module)
            if there in USERS_OF_ALL:
                problems.append(f"{path.relative_to(package)} imports {module} (a program or the benchmark)")
            elif there is not None and STAGES.index(there) > rank:
                where = "the package's top" if here is None else f"stage {here}"
                problems.append(f"{path.relative_to(package)} ({where}) imports {module} from the later stage {there}")
    return problems


def test_no_stage_imports_from_a_later_one():
    assert layering_violations() == []


def test_the_check_sees_a_backward_import(tmp_path):
    """The checker itself: an import from a later stage, even one inside a function, is reported."""
    for folder in ("data", "evaluate"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text('"""A stage."""\n')
    (tmp_path / "evaluate" / "metrics.py").write_text("X = 1\n")
    (tmp_path / "data" / "parsing.py").write_text("def f():\n    from arenapref.evaluate import metrics\n")
    (tmp_path / "config.py").write_text("from arenapref.data.parsing import f\n")
    # A copy of the layout under a folder named as the package, so module names come out the same.
    package = tmp_path / "arenapref"
    package.mkdir()
    for item in list(tmp_path.iterdir()):
        if item != package:
            item.rename(package / item.name)
    assert layering_violations(package) == [
        "config.py (the package's top) imports arenapref.data.parsing from the later stage data",
        "data/parsing.py (stage data) imports arenapref.evaluate.metrics from the later stage evaluate",
    ]


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_names_its_rule_file(stage):
    """A newcomer opening a stage's folder reads what it does and which rules run it."""
    doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
    assert doc and f"rules/{stage}.smk" in doc
    assert (PACKAGE.parents[1] / "rules" / f"{stage}.smk").is_file()


def test_the_top_holds_only_what_every_stage_uses():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "cli", "config", "errors", "io", "workflow"]
