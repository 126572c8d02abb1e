"""The agent's memories (docs/agent.md): facts are saved once, loaded into the next chat and
listed."""

from typing import Any
from uuid import UUID

from taskfleet.llm import prompts
from taskfleet.llm.scripted import ScriptedModel
from taskfleet.llm.types import ChatHistory
from taskfleet.runtime.kernel import Kernel
from tests.integration.agent_helpers import (
    chat_handler,
    revealed,
)
from tests.integration.api_client import api, auth, new_user
from tests.integration.conftest import (
    ConsumerFactory,
    chat_message,
    publish,
    wait_status,
)


class Spy(ScriptedModel):
    """The scripted model, keeping every conversation it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[ChatHistory] = []

    def stream(self, messages: ChatHistory, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super().stream(messages, **kwargs)


class TestMemories:
    async def test_facts_are_saved_once_loaded_into_the_next_chat_and_listed(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        spy = Spy()
        await consume(chat_handler(kernel, spy))
        user = new_user()

        async def say(text: str, chat: str) -> dict[str, Any]:
            msg = chat_message(user_id=user, content=text, chat_id=chat)
            await publish(kernel, msg)
            return await wait_status(kernel, msg.task_id, "completed")

        first = await say("Hi, my name is Ann and I live in Oslo.", "c1")
        assert first["output"]["reply"] == "You said: Hi, my name is Ann and I live in Oslo."
        assert revealed(kernel, first)["output"]["memories"] == {
            "facts": ["The user's name is Ann.", "The user lives in Oslo."],
            "saved": 2,
            "reasked": False,
        }
        # The same fact told again, spelt differently, is not stored twice
        again = await say("my name is ann", "c2")
        assert again["output"]["memories"]["saved"] == 0
        # And the next chat's model sees the memories and the chat's history
        spy.seen.clear()
        await say("what do you know?", "c1")
        conversation = spy.seen[0]
        assert conversation[0] == {
            "role": "system",
            "content": f"{prompts.SYSTEM}\n\n{prompts.MEMORIES_HEAD}\n"
            "- The user's name is Ann.\n- The user lives in Oslo.",
        }
        assert conversation[1:] == [
            {"role": "user", "content": "Hi, my name is Ann and I live in Oslo."},
            {"role": "assistant", "content": "You said: Hi, my name is Ann and I live in Oslo."},
            {"role": "user", "content": "what do you know?"},
        ]
        # The API lists them: to their user, to a service; to anyone else they do not exist
        async with api(kernel) as client:
            mine = await client.get(f"/api/users/{user}/memories", headers=auth(user))
            body = await mine.json()
            assert mine.status == 200, body
            assert sorted(m["fact"] for m in body["memories"]) == [
                "The user lives in Oslo.",
                "The user's name is Ann.",
            ]
            assert {UUID(m["source_task_id"]) for m in body["memories"]} == {first["id"]}
            theirs = await client.get(f"/api/users/{user}/memories", headers=auth("mallory"))
            assert theirs.status == 404
            assert (await theirs.json())["error"]["code"] == "not_found"
            service = await client.get(
                f"/api/users/{user}/memories?limit=1", headers=auth("backend", "service")
            )
            assert service.status == 200
            assert len((await service.json())["memories"]) == 1
            bad = await client.get(f"/api/users/{user}/memories?limit=0", headers=auth(user))
            assert bad.status == 422
