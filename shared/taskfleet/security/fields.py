"""Which fields of a task are sealed at rest, by task type (docs/security.md).

The runner seals them where it writes them (a checkpoint, an output, a child's input) and
opens them where it reads them (the claimed checkpoint and input): a handler sees plaintext
only. The sealed values are those of taskfleet.security.crypto, each bound to its task's id
and its field label, as the handlers sealed them before:

- chat_message: the checkpoint, whole (`checkpoint`: the rounds hold tools' arguments and
  results), and `output.memories.facts` (`memories`: the facts memories.fact holds sealed);
- tool_execution: `input.arguments` (`arguments`: an email's body, a credential...), and
  `output.result` (`result`).

A value that does not open under a key this process lacks is a retry (`unknown_key`): in a
rolling restart with a new key, the retry lands on a process that has it. Anything else (an
altered row, a value moved from another row) never opens: the task fails.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel

from taskfleet.core.constants import TaskType
from taskfleet.core.errors import InvalidPayload, PermanentError, RetryableError
from taskfleet.core.settings import Settings
from taskfleet.security.crypto import Keyring, UnknownKey, Unsealable, is_sealed

CHECKPOINT, ARGUMENTS, RESULT, MEMORIES = "checkpoint", "arguments", "result", "memories"

Path = tuple[str, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Policy:
    """The sealed fields of one task type: each path within its document, and its label."""

    checkpoint: bool = False  # sealed whole, labelled CHECKPOINT
    input: dict[str, str] = field(default_factory=dict)  # top-level key -> label
    output: dict[Path, str] = field(default_factory=dict)


POLICIES: dict[TaskType, Policy] = {
    TaskType.CHAT: Policy(checkpoint=True, output={("memories", "facts"): MEMORIES}),
    TaskType.TOOL: Policy(input={ARGUMENTS: ARGUMENTS}, output={(RESULT,): RESULT}),
}
NONE = Policy()


def unsealable(what: str, exc: Unsealable) -> RetryableError | PermanentError:
    """The task's error for a sealed value of its own that does not open: `unknown_key`
    (retryable) for a key this process does not hold, `unsealable` (permanent) otherwise."""
    if isinstance(exc, UnknownKey):
        return RetryableError(f"{what}: {exc}", code="unknown_key")
    return PermanentError(f"{what}: {exc}", code="unsealable")


@dataclass(frozen=True)
class Sealer:
    """The process's keys applied to the sealed fields of each task type."""

    keyring: Keyring
    # In production a sealed input field must be sealed: the kernel always seals it, so a
    # plain one was written by someone else, and is not acted on.
    require_sealed: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> "Sealer":
        """The process's sealer; in production it refuses plain input fields meant to be sealed."""
        return cls(Keyring.from_settings(settings), settings.environment == "production")

    # -- writing -----------------------------------------------------------------------------

    def seal_checkpoint(self, task_type: TaskType, task_id: UUID, state: Any) -> Any:
        """The checkpoint to store: sealed whole if its type's policy says so, else unchanged."""
        if not POLICIES.get(task_type, NONE).checkpoint or state is None or is_sealed(state):
            return state
        return self.keyring.seal(state, row=task_id, field=CHECKPOINT)

    def seal_input(self, task_type: TaskType, task_id: UUID, value: dict[str, Any]) -> Any:
        """A new task's input with its sealed fields sealed to the new task's own id: its
        row and its queue message carry only ciphertext."""
        labels = POLICIES.get(task_type, NONE).input
        return {
            k: self._sealed(v, task_id, labels[k]) if k in labels else v for k, v in value.items()
        }

    def seal_output(self, task_type: TaskType, task_id: UUID, output: Any) -> Any:
        """The output to store, with the fields its type's policy names sealed to the task's id."""
        for path, label in POLICIES.get(task_type, NONE).output.items():
            output = _update(output, path, self._sealing(task_id, label))
        return output

    def _sealing(self, task_id: UUID, label: str) -> Callable[[Any], Any]:
        return lambda value: self._sealed(value, task_id, label)

    def _sealed(self, value: Any, task_id: UUID, label: str) -> Any:
        return value if is_sealed(value) else self.keyring.seal(value, row=task_id, field=label)

    # -- reading -----------------------------------------------------------------------------

    def open_checkpoint(self, task_type: TaskType, task_id: UUID, checkpoint: Any) -> Any:
        """The checkpoint in the clear (one written before sealing was deployed is already)."""
        if not POLICIES.get(task_type, NONE).checkpoint or not is_sealed(checkpoint):
            return checkpoint
        try:
            return self.keyring.open(checkpoint, row=task_id, field=CHECKPOINT)
        except Unsealable as exc:
            raise unsealable("checkpoint", exc) from None

    def open_payload(self, task_type: TaskType, task_id: UUID, payload: M) -> M:
        """The payload with its sealed input fields in the clear. A field moved from another
        task, or altered, is the payload's fault: InvalidPayload."""
        labels = POLICIES.get(task_type, NONE).input
        opened = {
            key: self._open_input(label, task_id, getattr(payload, key))
            for key, label in labels.items()
        }
        return payload.model_copy(update=opened) if opened else payload

    def _open_input(self, label: str, task_id: UUID, value: Any) -> Any:
        if self.require_sealed and not is_sealed(value):
            raise InvalidPayload(f"{label}: not sealed (required in production)")
        try:
            return self.keyring.reveal(value, row=task_id)
        except UnknownKey as exc:
            raise RetryableError(f"{label}: {exc}", code="unknown_key") from None
        except Unsealable as exc:
            raise InvalidPayload(f"{label}: {exc}") from None


def _update(document: Any, path: Path, change: Callable[[Any], Any]) -> Any:
    """`document` with the value at `path` changed (a copy); as it is if there is none."""
    if not isinstance(document, dict) or path[0] not in document:
        return document
    inner = document[path[0]]
    changed = change(inner) if len(path) == 1 else _update(inner, path[1:], change)
    return {**document, path[0]: changed}
