"""The package's imports point one way: interfaces and configuration at the bottom, the stages
above them, the pipeline above those, the CLI and API on top; and no module imports itself
back through another (no cycles, counting imports made inside functions too)."""

from __future__ import annotations

from pathlib import Path

from tests.import_graph import imported_modules

PACKAGE = Path(__file__).resolve().parents[1] / "textclust"

# Lowest first. A module may import modules of its own layer or below, never above.
LAYERS = [
    {"textclust.errors", "textclust._version", "textclust.corpus", "textclust.interfaces", "textclust.stats",
     "textclust.config", "textclust.llm", "textclust.llm.config", "textclust.llm.keys", "textclust.prompts_loader",
     "textclust.prompts"},
    "stages",  # everything not named in another layer
    {"textclust.results"},  # a stored run read back
    {"textclust.pipeline", "textclust.report", "textclust.report.*"},
    {"textclust.cli", "textclust.api", "textclust", "textclust.__main__"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules of the package that ``path`` imports, at the top level only or anywhere (inside
    functions too); ``TYPE_CHECKING`` blocks do not count."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found = imported_modules(path, package, top_level_only=top_level_only)
    return {name for name in found if name in MODULES and name != here}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer_of(name: str) -> int:
    for index, layer in enumerate(LAYERS):
        if layer != "stages" and (name in layer or f"{name.rsplit('.', 1)[0]}.*" in layer):
            return index
    return LAYERS.index("stages")


def test_imports_point_down():
    wrong = []
    for name, path in MODULES.items():
        for target in imports(path, top_level_only=True):
            if layer_of(target) > layer_of(name):
                wrong.append(f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})")
    assert not wrong, "\n".join(sorted(wrong))


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_import_cycles():
    graph = {name: imports(path, top_level_only=False) for name, path in MODULES.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of those modules.
    for name in graph:
        graph[name] = {t for t in graph[name] if not (MODULES[t].name == "__init__.py" and name.startswith(t + "."))}
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(cycles)


def test_the_checks_can_fail():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("textclust.cli") > layer_of("textclust.pipeline") > layer_of("textclust.explain.loop") \
        > layer_of("textclust.interfaces")
