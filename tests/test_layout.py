"""The package's layout: data flows one way, config → model → solvers → learning → training →
run folder → circuit → validation, and no module imports against that direction."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dfc_analog"

# Layer of each top-level module or subpackage; a module may import only from its own layer or
# an earlier one. The command lines and the package's public API come last.
LAYERS = [
    {"errors", "parallel", "version", "cli"},
    {"config"},
    {"hardware"},
    {"model"},
    {"solvers"},
    {"learning"},
    {"theory", "data", "runio"},
    {"training"},
    {"circuit"},
    {"validation"},
    {"sweep"},
    {"train", "evaluate", "export", "validate", "figures", "__init__", "__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in RANK:
        pytest.fail(f"dfc_analog.{top} has no layer: add it to LAYERS in {Path(__file__).name}")
    return RANK[top]


def imports(path: Path) -> list:
    """(line, imported dfc_analog module) of every import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text())
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("dfc_analog")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
            if not base.startswith("dfc_analog"):
                continue
            for alias in node.names:                 # `from dfc_analog import runio` is a module
                sub = PACKAGE.parent / (base.replace(".", "/") + "/" + alias.name)
                is_module = sub.with_suffix(".py").exists() or (sub / "__init__.py").exists()
                found.append((node.lineno, f"{base}.{alias.name}" if is_module else base))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_data_flow(path):
    own = rank_of(module_name(path))
    against = [f"line {line}: {target}" for line, target in imports(path)
               if target != module_name(path) and rank_of(target) > own]
    assert not against, f"{path.relative_to(PACKAGE)} imports against the data flow: {against}"


def test_no_import_cycle_between_modules():
    graph = {module_name(p): {t for _, t in imports(p)} - {module_name(p)} for p in SOURCES}
    # a package's __init__ re-exports its modules; cycles through it are not real dependencies
    graph = {m: {t for t in targets if not (m.startswith(t + ".") and t in graph)}
             for m, targets in graph.items()}
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
