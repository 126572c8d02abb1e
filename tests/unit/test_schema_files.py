"""store/sql: one re-runnable file per function, named after it; chat rows written only by
the chat's own functions."""

import re

import pytest

from taskfleet.store.schema import Schema, SqlFile

FUNCTIONS = Schema.packaged().functions
DEFINES = re.compile(r"^CREATE OR REPLACE FUNCTION (\w+)\(", re.MULTILINE)
# Statements a file must not hold: it is applied again whenever it changes.
SCHEMA = re.compile(r"^\s*(CREATE (?!OR REPLACE FUNCTION)|ALTER |DROP )", re.MULTILINE)
WRITES_MESSAGES = re.compile(r"\b(INSERT INTO|UPDATE|DELETE FROM|FROM)\s+messages\b")


@pytest.mark.parametrize("f", FUNCTIONS, ids=lambda f: f.name)
def test_a_file_defines_the_function_it_is_named_after_and_only_it(f: SqlFile) -> None:
    assert set(DEFINES.findall(f.sql)) == {f.name}


@pytest.mark.parametrize("f", FUNCTIONS, ids=lambda f: f.name)
def test_a_file_holds_no_schema_change(f: SqlFile) -> None:
    assert SCHEMA.findall(f.sql) == []


def test_only_the_chat_functions_touch_the_chat_messages() -> None:
    """A generic transition calls tf_chat_* for its chat side (assistant message rows)."""
    touching = {f.name for f in FUNCTIONS if WRITES_MESSAGES.search(f.sql)}
    # tf_complete_many: a batch's replies in the batch's one statement (its file says why).
    chat = {"tf_chat_context", "tf_submit_chat", "tf_complete_many"} | {
        n for n in touching if n.startswith("tf_chat_")
    }
    assert touching == chat
    assert {"tf_chat_open", "tf_chat_reply", "tf_chat_failed", "tf_chat_cancelled"} <= touching
