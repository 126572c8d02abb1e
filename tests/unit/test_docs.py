"""The docs tell what the code does: the message schema is generated from the model, every
error code the code can answer or store is in docs/contract.md, so is every route, every file
docs/architecture.md names exists, and no link leaves the repository."""

import ast
import importlib.util
import json
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import jsonschema
import pytest

from taskfleet.core.constants import CONTROL_EXCHANGE, DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SOURCES = ("shared", "services", "cli")

# Calls whose first (or second, after the HTTP status) argument is an error code.
CODE_FIRST = {"parser_failed", "DocumentError"}
CODE_AFTER_STATUS = {"ApiError", "error_response"}
# Links to pages other helpers of this change are writing; each goes once it is merged.
PENDING_PAGES: set[str] = set()


def _message_schema() -> ModuleType:
    spec = importlib.util.spec_from_file_location("message_schema", DOCS / "message_schema.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value:
        return node.value
    return None


def _codes_in_call(call: ast.Call) -> set[str | None]:
    name, args = _name(call.func), call.args
    found = {_literal(k.value) for k in call.keywords if k.arg == "code"}
    if name in CODE_FIRST and args:
        found.add(_literal(args[0]))
    if name in CODE_AFTER_STATUS and len(args) > 1:
        found.add(_literal(args[1]))
    if name == "get" and len(args) == 2 and _literal(args[0]) == "code":  # .get("code", "x")
        found.add(_literal(args[1]))
    return found


def codes_in_python(source: str) -> set[str]:
    """Error codes written in Python: a `code` keyword or class attribute, a `"code"` key,
    or the code argument of the calls that take one."""
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            found |= _codes_in_call(node)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "code" for t in node.targets
        ):
            found.add(_literal(node.value))
        elif isinstance(node, ast.Dict):
            found |= {
                _literal(v)
                for k, v in zip(node.keys, node.values, strict=True)
                if k is not None and _literal(k) == "code"
            }
    return {c for c in found if c is not None}


def codes_in_sql(source: str) -> set[str]:
    """Error codes a SQL function stores: `'code', 'x'` in an object, or assigned to `code`."""
    found = set(re.findall(r"'code',\s*'(\w+)'", source))
    for assignment in re.findall(r"\bcode\s*:=\s*([^;]+);", source):
        found |= set(re.findall(r"'(\w+)'", assignment)) - set(
            re.findall(r"WHEN\s+'(\w+)'", assignment)
        )
    return found


def raised_codes() -> dict[str, set[str]]:
    """Every error code in the source -> the files that write it."""
    where: dict[str, set[str]] = {}
    for root in SOURCES:
        for path in (ROOT / root).rglob("*"):
            if path.suffix == ".py":
                codes = codes_in_python(path.read_text())
            elif path.suffix == ".sql":
                codes = codes_in_sql(path.read_text())
            else:
                continue
            for code in codes:
                where.setdefault(code, set()).add(str(path.relative_to(ROOT)))
    return where


def test_the_committed_message_schema_is_what_the_model_generates() -> None:
    generator = _message_schema()
    committed = (DOCS / "message.schema.json").read_text()
    assert committed == generator.render(), "run: .venv/bin/python docs/message_schema.py"


def test_the_message_schema_accepts_a_message_and_refuses_what_the_worker_refuses() -> None:
    schema = json.loads((DOCS / "message.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    message = {"v": 1, "task_id": "0b6b1c52-4f0e-4a3e-9d55-6c1b0f1f2a10",
               "type": "chat_message", "user_id": "u1", "chat_id": "c1", "attempt": 1,
               "payload": {"content": "hi"}}  # fmt: skip
    assert list(validator.iter_errors(message)) == []
    for bad in ({"user_id": "has space"}, {"type": "email"}, {"attempt": 0}, {"v": 2}):
        assert list(validator.iter_errors({**message, **bad})), bad


def test_the_extractor_finds_codes_of_every_kind() -> None:
    """If the extraction silently found nothing, the next test would prove nothing."""
    found = raised_codes()
    for code in (
        "not_found",
        "rate_limited",
        "deadline_exceeded",
        "unexpected",
        "llm_timeout",
        "tool_unknown",
        "parser_crashed",
        "invalid_document",
        "worker_lost",
        "frame_not_found",
        "lost",
    ):
        assert code in found, code


def test_every_error_code_in_the_code_is_in_the_contract() -> None:
    contract = (DOCS / "contract.md").read_text()
    missing = {
        code: sorted(files) for code, files in raised_codes().items() if f"`{code}`" not in contract
    }
    assert not missing, f"error codes missing from docs/contract.md: {missing}"


def _routes() -> set[str]:
    routes = {"GET /ws/tasks", "GET /openapi.json", "GET /healthz", "GET /readyz", "GET /metrics"}
    for path in (ROOT / "services/api/fleet_api").glob("*.py"):
        for method, route in re.findall(r'Operation\(\s*"([A-Z]+)",\s*"([^"]+)"', path.read_text()):
            routes.add(f"{method} {route}")
    return routes


def test_every_route_is_in_the_contract() -> None:
    contract = (DOCS / "contract.md").read_text()
    routes = _routes()
    assert len(routes) > 20
    assert not {r for r in routes if f"`{r}`" not in contract}


def test_every_file_the_architecture_tour_names_exists() -> None:
    text = (DOCS / "architecture.md").read_text()
    named = set(
        re.findall(r"(?<![\w./-])((?:[\w.-]+/)+[\w.-]+\.(?:py|sql|toml|md|json|yml))", text)
    )
    assert len(named) > 20
    assert not {p for p in named if not (ROOT / p).exists()}


def test_every_module_the_architecture_tour_names_exists() -> None:
    text = (DOCS / "architecture.md").read_text()
    roots = "taskfleet|taskfleet_cli|fleet_api|chat_worker|tool_worker|doc_worker|camera_worker"
    exchanges = {EVENTS_EXCHANGE, CONTROL_EXCHANGE, DEAD_LETTER_EXCHANGE}  # names, not modules
    named = set(re.findall(rf"`((?:{roots})(?:\.\w+)+)`", text)) - exchanges
    assert named
    missing = set()
    for name in named:  # a module, or a module's attribute (`taskfleet.path.consumer.Consumer`)
        try:
            pkgutil.resolve_name(name)
        except (ImportError, AttributeError, ValueError):
            missing.add(name)
    assert not missing


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of a page."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", ["README.md", *(f"docs/{p.name}" for p in DOCS.glob("*.md"))])
def test_links_stay_inside_the_repository_and_resolve(page: str) -> None:
    source = ROOT / page
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", source.read_text()):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        resolved = (source.parent / target).resolve() if target else source
        assert resolved.is_relative_to(ROOT), f"{page}: {target} leaves the repository"
        relative = str(resolved.relative_to(ROOT))
        if relative in PENDING_PAGES and not resolved.exists():
            continue
        assert resolved.exists(), f"{page}: {target} is missing"
        if anchor:
            assert anchor in _anchors(resolved), f"{page}: no #{anchor} in {relative}"
