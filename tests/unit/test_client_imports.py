"""`taskfleet.client` imports and works with aiohttp, pydantic and tenacity alone: in a fresh
interpreter where the server's dependencies cannot be imported at all, it still builds a
client and parses the API's bodies (the import contract in pyproject.toml says the same of
the import graph)."""

import subprocess
import sys

# What a backend that only talks HTTP does not have installed.
SERVER_ONLY = [
    "asyncpg",
    "aio_pika",
    "aiormq",
    "orjson",
    "structlog",
    "pydantic_settings",
    "prometheus_client",
    "uvloop",
    "fleet_api",
]

SCRIPT = f"""
import sys
for name in {SERVER_ONLY!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
from taskfleet.client import Taskfleet, TaskfleetSync, Task
from taskfleet.client.models import ChatStreamRequest
client = Taskfleet("http://127.0.0.1:1", "token")
ChatStreamRequest(chat_id="c1", content="hi", metadata={{"order": "o-1"}})
loaded = sorted(m for m in {SERVER_ONLY!r} if sys.modules.get(m) is not None)
assert not loaded, loaded
print("ok")
"""


def test_the_client_imports_without_the_servers_dependencies() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_check_would_see_a_server_dependency_imported() -> None:
    """The blocking works: the same interpreter cannot import the store."""
    script = SCRIPT.replace(
        "from taskfleet.client import", "import taskfleet.store.pool\nfrom taskfleet.client import"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode != 0
    assert "ImportError" in result.stderr or "ModuleNotFoundError" in result.stderr
