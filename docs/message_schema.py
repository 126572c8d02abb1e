"""Write docs/message.schema.json from the model that parses every delivery.

`.venv/bin/python docs/message_schema.py` writes it; `--check` exits 1 when the
committed file differs from what taskfleet.core.messages.TaskMessage generates, and
tests/unit/test_docs.py fails the same way, so the published schema cannot drift.
"""

import json
import sys
from pathlib import Path
from typing import Any

from taskfleet.core.messages import TaskMessage

TARGET = Path(__file__).with_name("message.schema.json")

DESCRIPTION = (
    "The body of a message on a work queue (chat_tasks, tool_executions, document_processing,"
    " camera_analysis): JSON, content_type application/json, persistent, with the AMQP"
    " message_id set to task_id. Keys not listed here are ignored. A body that does not fit"
    " is dead-lettered at once with the reason in the x-taskfleet-reason header"
    " (docs/contract.md)."
)


def schema() -> dict[str, Any]:
    generated = TaskMessage.model_json_schema(mode="validation")
    generated["description"] = DESCRIPTION
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **generated}


def render() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if TARGET.read_text() != render():
            print(
                f"{TARGET} is stale: run .venv/bin/python docs/message_schema.py", file=sys.stderr
            )
            return 1
        return 0
    TARGET.write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
