"""The fixture of the deploy/ checks: a command line parsed by the real `taskfleet` parser."""

import argparse
from collections.abc import Callable

import pytest

from taskfleet.core.constants import QUEUE_BY_WORKER
from taskfleet_cli import main as cli
from taskfleet_cli import parser as cli_parser


@pytest.fixture
def parse_command(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], argparse.Namespace]:
    """Parse `taskfleet ARGV` with the real parser. The workers of the contract (DESIGN.md §8)
    are accepted even while one of them is not registered in the CLI yet."""
    for name in QUEUE_BY_WORKER:
        monkeypatch.setitem(
            cli_parser.WORKERS, name, cli_parser.WORKERS.get(name, f"{name}_worker.main")
        )
    parser = cli_parser.build_parser()

    def parse(argv: list[str]) -> argparse.Namespace:
        assert argv, "an empty command"
        assert argv[0] in cli.COMMANDS, f"taskfleet {argv[0]}: no such command"
        try:
            return parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"taskfleet {' '.join(argv)}: the command line refuses it")

    return parse
