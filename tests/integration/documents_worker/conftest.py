"""Upload → document_processing → doc-worker handler (real parser children) → search: an API
client on the test kernel."""

from collections.abc import AsyncIterator

import pytest

from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import api
from tests.integration.documents_worker.helpers import Client


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[Client]:
    async with api(kernel) as c:  # publishes for real: the consumer below takes it
        yield c
