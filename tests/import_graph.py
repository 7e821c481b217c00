"""Reading a module's imports without running it (for the layering tests)."""

from __future__ import annotations

import ast
from pathlib import Path


def imported_modules(path: Path, package: str, top_level_only: bool = False) -> set[str]:
    """Every module ``path`` imports (top level only, or inside functions too), absolute: ``from
    ..x import y`` in package ``textclust.store`` is ``textclust.x`` (and ``textclust.x.y``).
    Imports under ``if TYPE_CHECKING:`` do not count (they never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.dump(block.test)
               for n in ast.walk(block)}
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found
