"""chat_worker.handlers.user_text: the user's text, or InvalidPayload (permanent)."""

from typing import Any

import pytest

from chat_worker.handlers import user_text
from taskfleet.core.errors import InvalidPayload


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"content": None},
        {"content": ""},
        {"content": "   \n\t"},
        {"content": 42},
        {"content": ["hi"]},
        {"text": "wrong key"},
        None,
        "content",
        ["content"],
    ],
)
def test_rejects_missing_empty_or_non_string_content(payload: Any) -> None:
    with pytest.raises(InvalidPayload, match=r"^payload\.content ") as info:
        user_text(payload)
    assert info.value.retryable is False


def test_returns_the_content_unchanged() -> None:
    assert user_text({"content": "  hi there "}) == "  hi there "
    assert user_text({"content": "x", "other": 1}) == "x"
