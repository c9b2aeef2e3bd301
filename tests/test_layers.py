"""The shape of the house, checked over the source: imports go downward only, learners and acting never import
each other, data never imports networks or learners, MXNet is loaded only where it is needed, and only the
builder (and the config's own definitions) reads the mode or compares a collector or placement to a name.

The layers are those of docs/development.md ("The layers").
"""
import ast
import pathlib
import subprocess
import sys

import pytest

from gluon_pdqn.config import COLLECTORS, MODES, PLACEMENTS

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "gluon_pdqn"

# Lowest first: a unit may import units of its own layer or lower ones, never higher ones.
LAYERS = [
    {"__init__", "errors", "config", "metrics"},
    {"envs", "replay", "exploration", "distributional", "architecture", "checkpoint", "parallel", "plots"},
    {"networks", "losses"},
    {"learners", "acting"},
    {"build", "updates"},
    {"run", "export", "compare"},
    {"cli"},
]
NEVER = {("learners", "acting"), ("acting", "learners"), ("replay", "networks"), ("replay", "learners"),
         ("envs", "networks"), ("envs", "learners")}
WITHOUT_MXNET = ["gluon_pdqn.config", "gluon_pdqn.metrics", "gluon_pdqn.envs", "gluon_pdqn.replay",
                 "gluon_pdqn.exploration", "gluon_pdqn.checkpoint", "gluon_pdqn.build", "gluon_pdqn.updates", "gluon_pdqn.acting.vector",
                 "gluon_pdqn.acting.apex", "gluon_pdqn.acting.async_actors", "gluon_pdqn.acting.pool",
                 "gluon_pdqn.parallel.remote"]


def _unit(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0] if parts[0] != "__init__" or len(parts) > 1 else "__init__"


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def _imported_units(path: pathlib.Path) -> set[str]:
    """The package's units that ``path`` imports (relative imports, at any depth, lazy ones included)."""
    package = path.parent.relative_to(PACKAGE.parent).parts
    units = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[:len(package) - (node.level - 1)]) + (node.module.split(".") if node.module else [])
            targets = [base] if node.module else [base + [alias.name] for alias in node.names]
            units.update(target[1] for target in targets if len(target) > 1)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gluon_pdqn."):
            units.add(node.module.split(".")[1])
    return {u if (PACKAGE / u).exists() or (PACKAGE / f"{u}.py").exists() else "__init__" for u in units}


def _layer(unit: str) -> int:
    (index,) = [i for i, layer in enumerate(LAYERS) if unit in layer]
    return index


def test_every_unit_has_a_layer():
    units = {_unit(path) for path in _sources()}
    assert units == set().union(*LAYERS), units ^ set().union(*LAYERS)


def test_imports_go_downward_only():
    wrong = []
    for path in _sources():
        unit = _unit(path)
        for imported in _imported_units(path) - {unit}:
            if _layer(imported) > _layer(unit) or (unit, imported) in NEVER:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {imported}")
    assert not wrong, wrong


@pytest.mark.parametrize("module", WITHOUT_MXNET)
def test_numpy_side_modules_do_not_load_mxnet(module):
    code = f"import sys, {module}; sys.exit('mxnet' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, f"importing {module} loads mxnet"


def _mode_readers(tree: ast.AST) -> list[int]:
    """Lines that read ``<x>.run.mode`` / ``<x>.mode`` of a config, or compare something to a mode, collector or
    placement name."""
    names = set(MODES) | set(COLLECTORS) | set(PLACEMENTS)
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "mode" and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "run":
            lines.append(node.lineno)
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            literals = [s.value for s in sides if isinstance(s, ast.Constant) and isinstance(s.value, str)]
            literals += [e.value for s in sides if isinstance(s, (ast.Tuple, ast.List, ast.Set)) for e in s.elts
                         if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if names & set(literals):
                lines.append(node.lineno)
    return lines


def test_only_the_builder_and_the_config_read_the_mode():
    readers = {}
    for path in _sources():
        if path.relative_to(PACKAGE).as_posix() in ("build.py", "config.py"):
            continue
        lines = _mode_readers(ast.parse(path.read_text()))
        if lines:
            readers[path.relative_to(PACKAGE).as_posix()] = lines
    assert not readers, f"modes, collectors or placements asked for outside the builder: {readers}"


def test_the_mode_check_finds_what_it_looks_for():
    """The check above can fail: it finds each kind of reading it forbids."""
    assert _mode_readers(ast.parse("if cfg.run.mode == 'x': pass")) == [1]
    assert _mode_readers(ast.parse("kind = 1\nif kind in ('data', 'model'): pass")) == [2]
    assert _mode_readers(ast.parse("if backend == 'thread': pass")) == []
