"""JSON written by a model: strict first, then json-repair (counted), never an exception.

Models wrap JSON in prose or code fences, drop a closing bracket, or cut an answer short.
json-repair mends most of that; what it cannot mend comes back as something that fails the
caller's pydantic validation, which decides what to do (re-ask, or tell the model).
"""

from typing import Any

import json_repair
import orjson

from taskfleet.core.metrics import LLM_JSON_REPAIRS


def loads_lenient(text: str) -> Any:
    """The JSON value in `text`; repaired when it is not valid JSON as it stands."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    LLM_JSON_REPAIRS.inc()
    try:
        return json_repair.loads(text)
    except Exception:  # the repairer's own failure is "beyond repair", not our crash
        return None
