"""chat_worker.memory: JSON repaired then validated, one re-ask, its own timeout, and never an
exception out of `remember` (the reply must not fail because of it)."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any
from uuid import uuid4

import pytest

from chat_worker.memory import NotAFactList, extract, parse_facts, remember
from taskfleet.core.metrics import LLM_JSON_REPAIRS
from taskfleet.llm.types import ChatHistory, LlmServerError, StreamItem, ToolSpec
from taskfleet.security.crypto import Keyring, new_key


class Answers:
    """A model that answers each call with the next text (or raises, or hangs)."""

    name = "answers"

    def __init__(self, *answers: str | Exception | None) -> None:
        self.answers = list(answers)
        self.calls: list[ChatHistory] = []

    async def stream(
        self, messages: ChatHistory, *, tools: Sequence[ToolSpec] | None = None
    ) -> AsyncIterator[StreamItem]:
        self.calls.append(list(messages))
        answer = self.answers.pop(0)
        if answer is None:
            await asyncio.Event().wait()  # hangs until cancelled
        if isinstance(answer, Exception):
            raise answer
        yield str(answer)

    async def aclose(self) -> None:
        pass


def repairs() -> float:
    return float(LLM_JSON_REPAIRS._value.get())


@pytest.mark.parametrize(
    ("answer", "facts", "repaired"),
    [
        ('["The user is Ann."]', ["The user is Ann."], False),
        ("[]", [], False),
        ('{"facts": ["A.", "B."]}', ["A.", "B."], False),
        ('["The user is Ann."', ["The user is Ann."], True),  # cut short
        ('Sure! Here you go:\n```json\n["Likes tea."]\n```', ["Likes tea."], True),
        ("['single quotes']", ["single quotes"], True),
    ],
)
def test_facts_are_parsed_and_repaired(answer: str, facts: list[str], repaired: bool) -> None:
    before = repairs()
    assert parse_facts(answer) == facts
    assert repairs() - before == (1 if repaired else 0)


@pytest.mark.parametrize(
    "answer", ["I cannot help with that.", '{"name": "Ann"}', "[1, 2]", '["' + "x" * 400 + '"]']
)
def test_what_is_not_a_fact_list_is_refused(answer: str) -> None:
    with pytest.raises(NotAFactList):
        parse_facts(answer)


async def test_an_invalid_answer_gets_one_corrective_reask() -> None:
    model = Answers("no JSON here", '["The user is Ann."]')
    facts, reasked = await extract(
        model, user_text="I am Ann", reply="Hi Ann", known=[], timeout_s=5
    )
    assert (facts, reasked) == (["The user is Ann."], True)
    assert len(model.calls) == 2
    reask = model.calls[1][-1]
    assert reask["role"] == "user"
    assert "not a JSON list" in reask["content"]
    assert model.calls[1][-2] == {"role": "assistant", "content": "no JSON here"}


class FailingPool:
    """remember() must not reach the database when there is nothing to save (a taskfleet Db)."""

    async def fetch(self, *_: Any) -> list[Any]:
        raise AssertionError("no facts: nothing to save")

    async def fetchrow(self, *_: Any) -> Any:
        raise AssertionError("no facts: nothing to save")

    async def fetchval(self, *_: Any) -> Any:
        raise AssertionError("no facts: nothing to save")

    async def execute(self, *_: Any) -> str:
        raise AssertionError("no facts: nothing to save")

    def acquire(self) -> AbstractAsyncContextManager[Any]:
        raise AssertionError("no facts: nothing to save")


@pytest.mark.parametrize(
    ("answers", "warning"),
    [
        (("still prose", "prose again"), "no JSON list of facts after one re-ask"),
        ((None,), "timed out after 0.2s"),
        ((LlmServerError("boom"),), "memory extraction failed: llm_server_error"),
    ],
)
async def test_failures_are_warnings_never_exceptions(
    answers: tuple[str | Exception | None, ...], warning: str
) -> None:
    outcome = await remember(
        Answers(*answers),
        FailingPool(),
        user_id="u",
        task_id=uuid4(),
        user_text="hi",
        reply="hello",
        known=[],
        timeout_s=0.2,
        keyring=Keyring.from_text(new_key("k1")),
    )
    assert outcome.warning is not None
    assert warning in outcome.warning
    assert (outcome.facts, outcome.saved) == ([], 0)
