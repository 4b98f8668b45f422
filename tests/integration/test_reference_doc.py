"""docs/reference.md (issue 24, item 10) lists every route the server answers and every command of
the CLI (scripts/reference_tables.py makes the tables: run it with --write after adding one), and
the guides send no reader to a document outside the repository."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from orchestra.domain.commands import CommandContext, render_element
from orchestra.errors import InvalidInput

ROOT = Path(__file__).resolve().parent.parent.parent
REFERENCE = ROOT / "docs" / "reference.md"
FIX = "python scripts/reference_tables.py --write"


def tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "reference_tables", ROOT / "scripts" / "reference_tables.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_lists_every_route_of_the_server() -> None:
    text = REFERENCE.read_text()
    routes = tables().app_routes()
    assert len(routes) > 100
    missing = [f"{m} {p}" for m, p, _ in routes if f"| {m} | `{p}` |" not in text]
    assert missing == [], f"routes missing from docs/reference.md ({FIX}): {missing}"


def test_reference_lists_every_command_of_the_cli() -> None:
    text = REFERENCE.read_text()
    commands = tables().cli_commands()
    assert len(commands) > 50
    missing = [name for name, _, _ in commands if f"| `{name}` |" not in text]
    assert missing == [], f"commands missing from docs/reference.md ({FIX}): {missing}"


def test_docs_send_no_reader_outside_the_repository() -> None:
    for page in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        assert "CONTRACT" not in page.read_text(), page.name


def test_reference_brace_examples_are_what_the_formatter_does() -> None:
    context = CommandContext("r", "p", "j", "w", "/ws", {"name": "world"}, {})
    examples = {
        "{{print $1}}": "{print $1}",
        "echo ${{HOME}}": "echo ${HOME}",
        ".items[] | {{id: .id}}": ".items[] | {id: .id}",
        '{{"a": 1}}': '{"a": 1}',
        "{{{parameters[name]}}}": "{world}",
    }
    text = REFERENCE.read_text()
    for template, rendered in examples.items():
        assert template.replace("|", "\\|") in text, template
        assert render_element(template, context) == rendered
    for single in ("{print $1}", "${HOME}", "a}b"):
        try:
            render_element(single, context)
        except InvalidInput:
            continue
        raise AssertionError(f"{single!r} was accepted")
    assert re.search(r"literal `\{` or\s+`\}` is written twice", text)
