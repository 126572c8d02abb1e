"""A chat worker's claim brings the chat's context in its own statement (store.Preload), the
same context the handler would read itself under the user's row security."""

from chat_worker.agent import MEMORY_CONTEXT
from chat_worker.history import chat_context, load_context
from chat_worker.main import context_preload
from chat_worker.settings import ChatWorkerSettings
from taskfleet.core.messages import TaskMessage
from taskfleet.data.memories import save_memories
from taskfleet.runtime.kernel import Kernel
from taskfleet.store.records import Claim, ClaimPolicy
from taskfleet.store.tenancy import for_user
from tests.integration.api_client import new_user
from tests.integration.conftest import CHAT, chat_message


async def claim(kernel: Kernel, msg: TaskMessage) -> Claim:
    preload = context_preload(ChatWorkerSettings.of(kernel.settings))
    policy = ClaimPolicy(max_attempts=3, user_limit=0, throttle_s=0.1, preload=preload)
    return await kernel.store.claim(msg, redelivered=False, queue=CHAT.name, policy=policy)


async def test_the_claim_preloads_the_chat_and_memories_of_the_claimed_rows_user(
    kernel: Kernel,
) -> None:
    user, other = new_user(), new_user()
    first = chat_message(user, "hello 1", chat_id="c")
    claimed = await claim(kernel, first)
    assert chat_context(claimed.preloaded, kernel.keyring).history == []
    await kernel.store.complete(first.task_id, claimed.fence, {"reply": "r1"}, reply="r1")
    # Another user's chat of the same name is not this chat.
    theirs = chat_message(other, "not yours", chat_id="c")
    await kernel.store.complete(theirs.task_id, (await claim(kernel, theirs)).fence, {}, "no")
    await save_memories(for_user(kernel.pool, user), kernel.keyring, user, ["Likes tea."], None)

    second = chat_message(user, "hello 2", chat_id="c")
    claimed = await claim(kernel, second)

    preloaded = chat_context(claimed.preloaded, kernel.keyring)
    assert preloaded.history == [
        {"role": "user", "content": "hello 1"},
        {"role": "assistant", "content": "r1"},
    ]
    assert preloaded.memories == ["Likes tea."]
    history = ChatWorkerSettings.of(kernel.settings).chat_history_messages
    read = await load_context(
        for_user(kernel.pool, user),
        chat_id="c",
        user_id=user,
        task_id=second.task_id,
        history_limit=history,
        memory_limit=MEMORY_CONTEXT,
        keyring=kernel.keyring,
    )
    assert read == preloaded


async def test_only_a_claimed_verdict_preloads(kernel: Kernel) -> None:
    msg = chat_message(new_user(), chat_id="c")
    claimed = await claim(kernel, msg)
    await kernel.store.complete(msg.task_id, claimed.fence, {}, reply="done")
    again = await claim(kernel, msg)
    assert (again.verdict, again.preloaded) == ("duplicate", None)
