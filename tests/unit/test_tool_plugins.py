"""Tools from installed packages (entry-point group `taskfleet.tools`): found through the real
importlib.metadata, offered to the model, registered in the tool worker; a broken one stops the
process at start with one line naming its entry point."""

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskfleet.core.errors import ConfigError
from taskfleet.data import plugins
from taskfleet.data.toolspecs import CATALOGUE
from tool_worker.settings import ToolWorkerSettings
from tool_worker.tools import default_registry

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acme-tools"

BAD_TOOLS = """
from pydantic import BaseModel
from taskfleet.handler import CustomTool, ToolArgs


class Args(ToolArgs):
    pass


async def fn(args, call):
    return None


not_a_tool = {"name": "x"}
bad_name = CustomTool(name="Bad-Name", description="", args=Args, fn=fn)
clashes = CustomTool(name="calculator", description="", args=Args, fn=fn)
loose_args = CustomTool(name="loose", description="", args=BaseModel, fn=fn)
no_time = CustomTool(name="no_time", description="", args=Args, fn=fn, timeout_s=0)
"""


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    plugins.installed_tools.cache_clear()
    yield
    plugins.installed_tools.cache_clear()


def install(site: Path, name: str, points: dict[str, str]) -> None:
    """A distribution's metadata as pip writes it: what importlib.metadata reads."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{k} = {v}\n" for k, v in points.items())
    (info / "entry_points.txt").write_text(f"[taskfleet.tools]\n{lines}")


def test_the_example_package_is_offered_and_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, "acme_tools", {"create_ticket": "acme_tools:create_ticket",
                                     "lookup_order": "acme_tools:lookup_order"})  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    assert [t.name for t in plugins.installed_tools()] == ["create_ticket", "lookup_order"]

    specs = {s.name: s for s in plugins.all_tool_specs()}
    assert set(specs) == {t.name for t in CATALOGUE} | {"create_ticket", "lookup_order"}
    assert specs["lookup_order"].parameters["properties"]["order_id"]["pattern"] == r"^A-\d{4}$"

    registry = default_registry(ToolWorkerSettings())
    ticket = registry.get("create_ticket")
    assert (ticket.side_effect, ticket.timeout_s, ticket.rate.per_s) == (True, 15, 1)
    assert not registry.get("lookup_order").side_effect


@pytest.mark.parametrize(
    ("target", "complaint"),
    [
        ("no_such_module:tool", "does not load: ModuleNotFoundError"),
        ("badtools:not_a_tool", "not a taskfleet CustomTool but dict"),
        ("badtools:bad_name", "tool name 'Bad-Name' must match"),
        ("badtools:clashes", "a tool named 'calculator' exists already"),
        ("badtools:loose_args", "`args` of 'loose' must subclass ToolArgs"),
        ("badtools:no_time", "'no_time' needs a positive timeout"),
    ],
)
def test_a_broken_tool_stops_the_start_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, complaint: str
) -> None:
    (tmp_path / "badtools.py").write_text(textwrap.dedent(BAD_TOOLS))
    install(tmp_path, "broken", {"broken_point": target})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        plugins.installed_tools()
    message = str(caught.value)
    assert "taskfleet.tools entry point 'broken_point'" in message
    assert complaint in message
    assert "\n" not in message
