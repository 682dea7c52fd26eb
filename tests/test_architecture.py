"""The house rules of docs/architecture.md, checked on the source: floors, no circles, sizes.

Every ``import`` in ``src/convsight`` (also those inside functions) is read with ``ast``. A module
may import modules on its own floor or below, never above, and the graph of files has no cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "convsight"

# Floors, ground first: a room may import rooms on its own floor or below (docs/architecture.md).
FLOORS = [
    {"errors", "hooks", "progress", "cpu", "devices", "efficientnet_lite", "activations", "state_dicts",
     "folding",
     "timm_models", "files"},
    {"models", "images", "pictures"},
    {"units"},
    {"capture"},
    {"targets"},
    {"receptive", "attribute", "optimize", "filters", "faces", "trust"},
    {"atlas_data", "atlas_store", "syntheses"},
    {"atlas_access", "figures"},
    {"atlas", "mining", "microscope"},
    {"report"},
    {"demo", "web"},
    {"cli", "__main__"},
    {"__init__"},
]
FLOOR = {room: i for i, rooms in enumerate(FLOORS) for room in rooms}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        out[".".join(parts)] = path
    return out


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """Names of convsight modules (dotted, without 'convsight.') that an import statement reads."""
    if isinstance(node, ast.Import):
        return [a.name[len("convsight."):] for a in node.names if a.name.startswith("convsight.")]
    if node.level == 0:
        if node.module is None or not (node.module == "convsight" or node.module.startswith("convsight.")):
            return []
        base = node.module[len("convsight"):].lstrip(".")
    else:
        parts = module.split(".") if module else []
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
    names = [f"{base}.{a.name}" if base else a.name for a in node.names]
    return [base] + names if base else names


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        module = name[: -len(".__init__")] if name.endswith(".__init__") else ("" if name == "__init__" else name)
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(module, node, is_package):
                    for candidate in (target, f"{target}.__init__"):
                        if candidate in modules and candidate != name:
                            found.add(candidate)
                            break
        graph[name] = found
    return graph


def _room(module: str) -> str:
    return module.split(".")[0]


def test_every_room_has_a_floor():
    rooms = {_room(m) for m in _modules()}
    assert rooms <= set(FLOOR), f"rooms without a floor in FLOORS: {sorted(rooms - set(FLOOR))}"


def test_no_module_imports_a_higher_floor():
    upward = [f"{a} -> {b}" for a, targets in _graph().items() for b in targets
              if FLOOR[_room(b)] > FLOOR[_room(a)]]
    assert not upward, "imports from a lower floor to a higher one:\n" + "\n".join(sorted(upward))


def test_no_import_circles():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
            # a package's __init__ importing its own submodules (which import siblings) is not a
            # circle between rooms; circles inside a package between plain modules are
            plain = [m for m in component if not m.endswith("__init__") and m != "__init__"]
            if len(plain) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import circles: {cycles}"


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_sizes(path):
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_FILE_LINES, f"{path.name} has {len(lines)} lines"
    long = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            size = node.end_lineno - node.lineno + 1
            if size > MAX_FUNCTION_LINES:
                long.append(f"{node.name} ({size} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines in {path.name}: {long}"


# Facts about attribution methods live in one place, the method registry (attribute/registry.py,
# each method's own module beside it): code elsewhere reads a method's record (``method_info(m)
# .needs_layer``, ``.signed``, ``.title``, the default sets ``MethodNames(GROUP)``) and never
# compares a method's name to a literal, keys a table by method names or lists them. The demo
# picks the methods it shows, as a user's script would, and may list them (never compare them).
METHOD_HOME = SRC / "attribute"
LISTS_ALLOWED = (SRC / "demo",)


def _method_names() -> set[str]:
    from convsight.attribute import METHODS

    return set(METHODS)


def _named(node: ast.AST, names: set[str]) -> bool:
    """A literal method name, or a tuple / list / set literal holding one."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value in names
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_named(e, names) for e in node.elts)
    return False


def method_literals(tree: ast.AST, names: set[str], lists: bool = True) -> list[str]:
    """Where ``tree`` compares a method name to a literal, keys a dict by method names or (with
    ``lists``) lists two or more of them."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(_named(o, names)
                                                 for o in [node.left, *node.comparators]):
            found.append(f"line {node.lineno}: compares a method name to a literal")
        elif isinstance(node, ast.Dict) and any(k is not None and _named(k, names)
                                                for k in node.keys):
            found.append(f"line {node.lineno}: a dict keyed by method names")
        elif lists and isinstance(node, (ast.Tuple, ast.List, ast.Set)) and \
                sum(isinstance(e, ast.Constant) and e.value in names for e in node.elts) >= 2:
            found.append(f"line {node.lineno}: a list of method names")
    return found


def test_method_literal_scan_finds_what_it_should():
    names = {"gradcam", "guided"}
    bad = ['m == "gradcam"', 'm in ("gradcam", "x")', '"gradcam" != m', 'T = {"gradcam": 1}',
           'M = ("gradcam", "guided")', 'k in ["guided"]']
    good = ['m == "heatmap"', 'f(method="gradcam")', 'T = {"kind": "gradcam"}', 'x = ("guided",)',
            'm == record.name', 'm in METHODS']
    assert all(method_literals(ast.parse(s), names) for s in bad), \
        [s for s in bad if not method_literals(ast.parse(s), names)]
    assert not any(method_literals(ast.parse(s), names) for s in good)


@pytest.mark.parametrize("path", [p for p in sorted(SRC.rglob("*.py"))
                                  if METHOD_HOME not in p.parents],
                         ids=lambda p: str(p.relative_to(SRC)))
def test_no_method_name_literals_outside_the_registry(path):
    lists = not any(home in path.parents for home in LISTS_ALLOWED)
    found = method_literals(ast.parse(path.read_text()), _method_names(), lists)
    assert not found, (f"{path.relative_to(SRC)} keeps facts about attribution methods; read "
                       "the method registry (convsight.attribute.registry) instead:\n"
                       + "\n".join(found))


def test_no_method_tables_in_templates():
    """The explorer's pages take their method lists and captions from the registry: no template
    or script keys a table by method names."""
    web = SRC / "web"
    found = []
    for path in sorted([*(web / "templates").glob("*.html"), *(web / "static").glob("*.js")]):
        for name in _method_names():
            for quote in ("'", '"'):
                if re.search(rf"{quote}{re.escape(name)}{quote}\s*:", path.read_text()) or \
                        re.search(rf"[{{,]\s*{re.escape(name)}\s*:", path.read_text()):
                    found.append(f"{path.name}: {name}")
    assert not found, f"method tables in the explorer's pages: {sorted(set(found))}"


def test_the_top_level_exposes_the_public_api_only():
    """``import convsight`` binds the names of ``__all__`` and nothing else public; internals stay
    importable by their full path."""
    import subprocess
    import sys

    code = ("import convsight, json; print(json.dumps(sorted(n for n in vars(convsight) "
            "if not n.startswith('_')))); print(json.dumps(convsight.__all__)); "
            "print(json.dumps(dir(convsight)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=True)
    import json

    names, public, listed = (json.loads(line) for line in done.stdout.splitlines())
    assert names == sorted(public), set(names) ^ set(public)
    for internal in ("files", "hooks", "atlas_store", "efficientnet_lite", "capture", "models"):
        assert internal not in names
    assert sorted(listed) == sorted([*public, "__version__"])
    from convsight.hooks import forward_hooks  # internals: importable by full path

    import convsight.models

    assert callable(forward_hooks) and len(convsight.models.IMAGENET_MEAN) == 3
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        convsight.nothing  # noqa: B018
