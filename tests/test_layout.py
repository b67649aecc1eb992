"""The house rules that a change can break without any behaviour test noticing: no import loops, a short README."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "phasefit"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(path: Path, modules: set[str]) -> set[str]:
    """The phasefit modules a module imports when it is loaded (imports inside functions run later and cannot loop)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - max(node.level - 1, 0)] if node.level else []
            target = ".".join([*base, node.module] if node.module else base) if node.level else (node.module or "")
            found |= {f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {module for module in found if module in modules and module != name}


def test_no_module_of_the_package_imports_itself_back_through_others():
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: module_level_imports(path, set(paths)) for name, path in paths.items()}
    loops, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                loops.append(" -> ".join([*trail[trail.index(imported) :], imported]))
            elif imported not in state:
                visit(imported, [*trail, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert "phasefit.pipeline" in graph and graph["phasefit.pipeline"], "the scan reads the package's imports"
    assert not loops, loops


def test_the_readme_stays_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/"
