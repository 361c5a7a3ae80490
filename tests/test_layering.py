"""The architecture, checked: the point maze stays in its package, and data flows one way
(task -> data -> world model -> planning -> agents -> evaluation)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "hplan"
MAZE = ROOT / "envs" / "pointmaze"

# Which packages each part may import from hplan (besides core, shipped, sharding and itself).
ALLOWED = {
    "envs": {"envs"},
    "tasks.py": {"envs", "wm"},  # wm.config only: a task's [stack] table is checked early
    "data": {"data"},
    "planning": {"planning"},
    "wm": {"wm"},
    "train": {"train", "data", "wm", "render"},
    "distill.py": {"agents", "eval", "train", "wm", "planning"},  # runs agents: last
    "agents": {"agents", "envs", "planning", "wm"},
    "eval": {"eval", "planning", "agents"},
}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("hplan")}


def test_no_module_outside_the_point_maze_package_imports_it():
    offenders = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                 if MAZE not in p.parents
                 and any(m.startswith("hplan.envs.pointmaze") for m in _imports(p))]
    assert not offenders, f"these import the point maze: {offenders}"


def test_each_part_imports_only_what_comes_before_it_in_the_data_flow():
    bad = []
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT)
        part = rel.parts[0] if len(rel.parts) > 1 else rel.name
        if part not in ALLOWED:
            continue
        for m in _imports(p):
            name = m.split(".")
            if len(name) < 2 or name[1] in ("core", "shipped", "sharding"):
                continue
            target = name[1] if name[1] not in ("tasks",) else "tasks.py"
            if target not in ALLOWED[part] and target != part.removesuffix(".py"):
                bad.append(f"{rel} imports {m}")
    assert not bad, "\n".join(bad)
