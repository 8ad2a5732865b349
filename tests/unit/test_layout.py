"""The import rule of docs/architecture.md, read from every module's imports (``ast``).

- ``shared`` imports neither ``control`` nor ``worker``;
- ``control`` and ``worker`` never import each other;
- routes (``control/api/``, ``control/web/``) never touch the database session: they import
  neither SQLAlchemy (its error classes in ``sqlalchemy.exc`` aside) nor ``shared.db`` nor
  ``shared.models``, and call no ``.sessions()`` or ``.begin()``; they go through a service.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROUTES = ("control/api", "control/web")
SESSION_MODULES = ("sqlalchemy", "shared.db", "shared.models")
SESSION_CALLS = ("sessions", "begin")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, module: str, package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every import in a module's source, relative imports resolved."""
    here = module.split(".") if package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, name))
            # ``from shared import models`` imports shared.models
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def _session_calls(source: str) -> list[tuple[int, str]]:
    """(line, name) of every ``x.sessions(…)`` and ``x.begin(…)`` call."""
    return [
        (node.lineno, node.func.attr)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in SESSION_CALLS
    ]


def _touches_the_session(source: str, module: str) -> list[str]:
    found = [
        f"{line}: imports {name}"
        for line, name in _imports(source, module)
        if _within(name, SESSION_MODULES) and not _within(name, ("sqlalchemy.exc",))
    ]
    return found + [f"{line}: calls .{name}()" for line, name in _session_calls(source)]


def _file_imports(path: Path) -> list[tuple[int, str]]:
    return _imports(path.read_text(encoding="utf-8"), _module(path), path.name == "__init__.py")


def _files(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no module under {package}/"
    return files


def _within(module: str, roots: tuple[str, ...]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def _breaches(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _files(package)
        for line, module in _file_imports(path)
        if _within(module, forbidden)
    ]


def test_shared_imports_neither_control_nor_worker() -> None:
    assert _breaches("shared", ("control", "worker")) == []


def test_control_and_worker_never_import_each_other() -> None:
    assert _breaches("control", ("worker",)) + _breaches("worker", ("control",)) == []


def test_routes_never_touch_the_database_session() -> None:
    breaches = [
        f"{path.relative_to(ROOT)}:{found}"
        for package in ROUTES
        for path in _files(package)
        for found in _touches_the_session(path.read_text(encoding="utf-8"), _module(path))
    ]
    assert breaches == []


def test_the_rule_notices_a_route_that_touches_the_session() -> None:
    source = (
        "from .. import campaigns\n"
        "from shared import models\n"
        "import sqlalchemy.orm\n"
        "from sqlalchemy.exc import OperationalError\n"
        "def route(control):\n"
        "    audit(control.sessions)\n"
        "    with control.sessions.begin() as s:\n"
        "        pass\n"
    )
    assert _touches_the_session(source, "control.api.example") == [
        "2: imports shared.models",
        "3: imports sqlalchemy.orm",
        "7: calls .begin()",
    ]
    assert (1, "control.campaigns") in _imports(source, "control.api.example")
