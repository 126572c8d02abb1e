"""Search input: bad queries are 422; a query of stop words or symbols finds nothing and is no
error."""

import pytest

from tests.integration.api_client import auth, new_user
from tests.integration.documents_api.helpers import Client, error_of

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


class TestSearchInput:
    @pytest.mark.parametrize(
        "query", ["?q=x&limit=0", "?q=x&limit=51", f"?q={'x' * 501}", "?q=x&bad=1"]
    )
    async def test_bad_queries_are_422(self, client: Client, query: str) -> None:
        resp = await client.get(f"/api/documents/search{query}", headers=auth("a"))
        assert (await error_of(resp, 422))["code"] == "invalid_query"

    async def test_a_query_of_stop_words_or_symbols_finds_nothing_and_is_no_error(
        self, client: Client
    ) -> None:
        for q in ("", "   ", "the", "!!! & | :*", '"unclosed', "nul\x00byte"):
            resp = await client.get(
                "/api/documents/search", params={"q": q}, headers=auth(new_user())
            )
            body = await resp.json()
            assert resp.status == 200, body
            assert body["results"] == []
