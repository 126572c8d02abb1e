"""What a batch's `then` task reads of each member (chat_worker.chord)."""

from chat_worker.chord import MEMBER_CHARS, _outcome


def test_each_member_reads_as_its_reply_or_how_it_ended() -> None:
    assert _outcome(1, {"status": "completed", "reply": "42", "error_code": None}) == "1. 42"
    failed = {"status": "failed", "reply": None, "error_code": "llm_timeout",
              "error_message": "no answer"}  # fmt: skip
    assert _outcome(2, failed) == "2. (failed: llm_timeout: no answer)"
    assert (
        _outcome(3, {"status": "cancelled", "reply": None, "error_code": None}) == "3. (cancelled)"
    )
    long = _outcome(4, {"status": "completed", "reply": "x" * (MEMBER_CHARS + 10)})
    assert long == "4. " + "x" * MEMBER_CHARS + "…"
