"""The README and docs/ against the code: settings, CLI commands, routes, tests and paths.

Each check reads the Markdown and the code (settings, the CLI's parser, the route table,
test files parsed with ``ast``); nothing here starts a service.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from control.auth.roles import GRANTS, ROUTES, Can, Role
from control.cli.main import parser
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
SPAN = re.compile(r"`([^`]+)`")


@dataclass
class Table:
    section: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _tables(path: Path) -> list[Table]:
    """Every Markdown table of a file, with the ``##`` section it is in."""
    tables: list[Table] = []
    section, table = "", None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        if not line.startswith("|"):
            table = None
        elif table is None:
            table = Table(section, _cells(line))
            tables.append(table)
        elif not set(line) <= set("|-: "):  # not the separator row
            table.rows.append(_cells(line))
    return tables


def _table(section: str, path: Path = README) -> list[list[str]]:
    found = [t.rows for t in _tables(path) if t.section == section]
    assert len(found) == 1, f"{path.name} should have one table under '## {section}'"
    return found[0]


def _alternatives(word: str) -> list[str]:
    return [w for w in word.split("\\|") if w]


# -- settings ---------------------------------------------------------------------------------
def _shown(default: object) -> str | None:
    """A default as the README writes it (``None``: unset)."""
    if default is None:
        return None
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def test_every_setting_is_in_the_readme_once_with_its_default() -> None:
    names: Counter[str] = Counter()
    wrong = []
    for first, default, *_ in _table("Configuration"):
        row = re.findall(r"DIALGATE_[A-Z0-9_]*", first)
        names.update(row)
        defaults = default.split(" / ")
        assert len(defaults) == len(row), f"one default per variable: {first} | {default}"
        for name, cell in zip(row, defaults, strict=True):
            setting = Settings.model_fields.get(name.removeprefix("DIALGATE_").lower())
            if setting is None:
                continue
            shown = _shown(setting.default)
            ok = cell.startswith("unset" if shown is None else f"`{shown}`")
            if not ok:
                wrong.append(f"{name}: README says {cell!r}, the code {shown or 'unset'!r}")
    settings = {f"DIALGATE_{n.upper()}" for n in Settings.model_fields}
    assert sorted(settings - set(names)) == [], "settings missing from the README"
    assert sorted(set(names) - settings) == [], "README names settings that do not exist"
    assert [n for n, k in names.items() if k > 1] == [], "settings listed twice"
    assert wrong == []


# -- CLI ----------------------------------------------------------------------------------------
def _subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _commands() -> tuple[set[str], set[str]]:
    """Every command of the parser (``dnc add`` for nested ones), and the groups."""
    commands, groups = set(), set()
    for name, sub in _subcommands(parser()).items():
        nested = _subcommands(sub)
        if nested:
            groups.add(name)
            commands |= {f"{name} {n}" for n in nested}
        else:
            commands.add(name)
    return commands, groups


def test_every_cli_command_is_in_the_readme_once() -> None:
    commands, groups = _commands()
    listed: Counter[str] = Counter()
    for first, *_ in _table("The CLI"):
        for span in SPAN.findall(first):
            words = span.split()
            if words[0] != "dialgate":
                continue
            for top in _alternatives(words[1]):
                if top in groups:
                    listed.update(f"{top} {n}" for n in _alternatives(words[2]))
                else:
                    listed[top] += 1
    assert sorted(commands - set(listed)) == [], "commands missing from the README"
    assert sorted(set(listed) - commands) == [], "README lists commands that do not exist"
    assert [c for c, n in listed.items() if n > 1] == [], "commands listed twice"


# -- HTTP routes --------------------------------------------------------------------------------
ROUTE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/\S*)")


def test_every_route_is_in_the_readme_once() -> None:
    routes = {(m, re.sub(r"\{\w+_id\}", "{id}", p)) for m, p in ROUTES}
    listed: Counter[tuple[str, str]] = Counter()
    for first, *_ in _table("The HTTP API"):
        for span in SPAN.findall(first):
            found = ROUTE.match(span)
            if not found:
                continue
            method, path = found[1], found[2].split("[")[0]
            head, _, last = path.rpartition("/")
            listed.update((method, f"{head}/{alt}") for alt in _alternatives(last) or [""])
    assert sorted(routes - set(listed)) == [], "routes missing from the README"
    assert sorted(set(listed) - routes) == [], "README lists routes that do not exist"
    assert [r for r, n in listed.items() if n > 1] == [], "routes listed twice"


def test_the_role_table_of_the_security_page_is_the_code() -> None:
    columns = {
        "reads": Can.READ,
        "pause": Can.PAUSE,
        "resume": Can.RESUME,
        "reports": Can.REPORT,
        "create": Can.ADMIN,
        "stop every organisation": Can.PLATFORM,
    }
    (table,) = [t for t in _tables(ROOT / "docs" / "security.md") if t.section == "Roles"]
    caps = [next(c for k, c in columns.items() if h.startswith(k)) for h in table.header[1:]]
    shown = {
        SPAN.findall(role)[0]: {c for c, cell in zip(caps, cells, strict=True) if cell}
        for role, *cells in table.rows
    }
    expected = {r.value: set(g) for r, g in GRANTS.items()}
    expected["DIALGATE_ADMIN_TOKEN"] = {*GRANTS[Role.ADMIN], Can.PLATFORM}  # platform admin
    assert shown == expected


# -- tables -------------------------------------------------------------------------------------
def test_no_table_row_repeats() -> None:
    repeated = []
    for path in [README, *DOCS]:
        for table in _tables(path):
            counts = Counter(" | ".join(r) for r in table.rows)
            repeated += [f"{path.name} ({table.section}): {r}" for r, n in counts.items() if n > 1]
    for table in _tables(README):  # a README row is one thing: its first cell says which
        counts = Counter(r[0] for r in table.rows)
        repeated += [f"README.md ({table.section}): {r}" for r, n in counts.items() if n > 1]
    assert repeated == []


# -- tests and paths the docs name ----------------------------------------------------------------
TEST_REF = re.compile(r"((?:[\w-]+/)*test_\w+\.py)(?:::([^\s`,;)]*))?")
PATH_REF = re.compile(r"(?<![\w/.])((?:control|shared|worker|bench|tests|deploy)/[\w./-]*)")
NAME_REF = re.compile(r"(?<![\w/.])((?:control|shared|worker|bench|tests)/[\w/]+\.py)::(\w+)")
MODULE_REF = re.compile(r"`(?:python -m )?((?:control|shared|worker|bench)(?:\.\w+)+)`")


@cache
def _test_names(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return frozenset(
        n.name
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
    )


def _test_files(ref: str) -> list[Path]:
    return [p for p in sorted((ROOT / "tests").rglob(Path(ref).name)) if p.as_posix().endswith(ref)]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_every_test_the_docs_name_exists() -> None:
    missing = []
    for doc in [README, *DOCS]:
        text = _text(doc)
        missing += [f"{doc.name}: `::{m}` names no file" for m in re.findall(r"`::(\w*)", text)]
        for ref, name in TEST_REF.findall(text):
            files = _test_files(ref)
            if not files:
                missing.append(f"{doc.name}: no file {ref}")
            elif name and not any(name in _test_names(f) for f in files):
                missing.append(f"{doc.name}: no test {ref}::{name}")
    assert missing == []


def _top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(_text(path)).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def test_every_path_the_docs_name_exists() -> None:
    missing = []
    for doc in [README, *DOCS]:
        text = _text(doc)
        for ref in PATH_REF.findall(text):
            ref = ref.rstrip(".")
            if not (ROOT / ref).exists():
                missing.append(f"{doc.name}: no {ref}")
        for ref, name in NAME_REF.findall(text):
            if (ROOT / ref).is_file() and name not in _top_level_names(ROOT / ref):
                missing.append(f"{doc.name}: {ref} defines no {name}")
        for dotted in MODULE_REF.findall(text):
            parts = dotted.split(".")
            if not any(_is_module(".".join(parts[:n])) for n in range(2, len(parts) + 1)):
                missing.append(f"{doc.name}: no module {dotted}")
    assert missing == []


def test_no_doc_or_comment_cites_an_issue_number() -> None:
    cited = []
    for path in [README, *DOCS, *sorted(ROOT.glob("[cswbt]*/**/*.py"))]:
        for n, line in enumerate(_text(path).splitlines(), 1):
            if re.search(r"\bissues? #?\d+|\blater[ ]issue\b", line):
                cited.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert cited == []
