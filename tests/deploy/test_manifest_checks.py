"""The checks of deploy/ themselves catch mistakes: a command `taskfleet` refuses, a variable that
is not a taskfleet setting."""

import argparse
from collections.abc import Callable

import pytest

from tests.deploy.manifests import effective_settings


def test_the_command_checks_catch_mistakes(
    parse_command: Callable[[list[str]], argparse.Namespace],
) -> None:
    assert parse_command(["worker", "doc", "--concurrency", "2"]).name == "doc"
    assert parse_command(["cleanup", "--older-than", "30d"]).older_than == "30d"
    for wrong in (["serve"], ["worker", "gpu"], ["api", "--prot", "1"], ["migrate", "now"]):
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            parse_command(wrong)
    with pytest.raises(AssertionError, match="not taskfleet settings"):
        effective_settings({"DATABASE_URL": "postgresql://x/y", "DB_URL": "postgresql://x/y"})
