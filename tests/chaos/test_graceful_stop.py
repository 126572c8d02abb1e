"""SIGTERM: in-flight tasks finish within SHUTDOWN_GRACE_S and are not redelivered; past the
grace, what they saved stays and their messages go back to the queue for another worker."""

import signal
import time
from collections.abc import Callable
from uuid import UUID

import asyncpg

from taskfleet.core.settings import Settings
from tests.chaos.harness import Fleet, submit, verify
from tests.conftest import Proc, process_env, wait_for


async def _processing(db: asyncpg.Pool, tag: str, n: int) -> bool:
    count = await db.fetchval(
        "SELECT count(*) FROM tasks WHERE status = 'processing' AND chat_id LIKE $1", f"{tag}-%"
    )
    return bool(count >= n)


async def test_sigterm_lets_in_flight_tasks_finish_within_the_grace(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    # Given one worker busy with 6 replies of about 1.2 s each (12 words, 100 ms a word)
    fleet = Fleet(
        settings, spawn, workers=1, worker_env={"SCRIPTED_DELAY_MS": 100, "SHUTDOWN_GRACE_S": 10}
    )
    await fleet.start()
    subs = await submit(fleet, 6, "grace", words=" w1 w2 w3 w4 w5 w6 w7 w8 w9")
    await wait_for(lambda: _processing(db, "grace", 6), what="six tasks in flight")
    # When it is asked to stop
    worker = fleet.chat[0].popen
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(timeout=20)
    stopped_in = time.monotonic() - started
    # Then it finished them first: one attempt each, nothing left for another worker
    verdict = await verify(db, subs, timeout_s=5)
    print(verdict.line("graceful-stop", stopped_in_s=round(stopped_in, 2)))
    assert code == 0
    assert (verdict.completed, verdict.multi_attempt, verdict.lost) == (6, 0, 0)
    assert "worker_stopped" in fleet.chat[0].output()


async def test_past_the_grace_tasks_are_handed_back_and_finished_elsewhere(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    tag, words = "handback", "".join(f" w{i}" for i in range(30))  # about 3 s a reply
    fleet = Fleet(
        settings, spawn, workers=1, worker_env={"SCRIPTED_DELAY_MS": 100, "SHUTDOWN_GRACE_S": 0.5}
    )
    await fleet.start()
    subs = await submit(fleet, 4, tag, words=words)
    await wait_for(lambda: _processing(db, tag, 4), what="four tasks in flight")
    worker = fleet.chat[0].popen
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert "grace_expired" in fleet.chat[0].output()
    # What they had streamed so far was saved, and they are queued again, not failed
    rows = await db.fetch(
        "SELECT t.status, t.attempts, m.content FROM tasks t JOIN messages m"
        " ON m.task_id = t.id AND m.role = 'assistant' WHERE t.id = ANY($1::uuid[])",
        list(subs.accepted),
    )
    assert {r["status"] for r in rows} == {"queued"}
    assert all(r["content"].startswith("You said: handback") for r in rows)
    # A new worker takes them over and finishes them, the interrupted attempt not counted
    fleet.worker_env = {"SCRIPTED_DELAY_MS": 1}
    fleet.restart_dead_workers()
    verdict = await verify(db, subs, timeout_s=60)
    print(verdict.line("handed-back"))
    assert (verdict.completed, verdict.lost, verdict.wrong_replies) == (4, 0, 0)
    assert verdict.multi_attempt == 0


async def test_sigterm_hands_back_what_was_prefetched_at_once_and_burns_no_attempt(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    # Given a worker with 2 slots busy with slow replies (about 2 s each) and 2 more
    # deliveries prefetched behind them, and a long grace
    tag, words = "prefetch", "".join(f" w{i}" for i in range(20))
    fleet = Fleet(
        settings, spawn, workers=1, worker_env={"SCRIPTED_DELAY_MS": 100, "SHUTDOWN_GRACE_S": 30}
    )
    await fleet.start()
    first = fleet.chat[0]
    first.popen.terminate()  # the fleet's own worker: replaced by one with 2 slots
    first.popen.wait(timeout=20)
    stopping = fleet.spawn(
        ["worker", "chat", "--concurrency", "2"],
        process_env(settings, SCRIPTED_DELAY_MS=100, SHUTDOWN_GRACE_S=30),
        name="stopping",
    )
    await wait_for(lambda: _true('"worker_started"' in stopping.output()), what="it to start")
    subs = await submit(fleet, 8, tag, words=words)
    await wait_for(lambda: _processing(db, tag, 2), what="two tasks in flight")
    rows = await db.fetch(
        "SELECT id FROM tasks WHERE status = 'processing' AND chat_id LIKE $1", f"{tag}-%"
    )
    running = {r["id"] for r in rows}
    # When it is asked to stop, and another worker is there to take over
    stopping.popen.send_signal(signal.SIGTERM)
    fleet.worker_env = {"SCRIPTED_DELAY_MS": 1}
    fleet.chat = [fleet.start_worker(1)]
    # Then what it had not started went back at once: the other worker finishes all of
    # those while the first is still finishing its two
    others = [i for i in subs.accepted if i not in running]
    await wait_for(lambda: _completed(db, others), what="the handed-back tasks", timeout_s=30)
    assert stopping.popen.poll() is None, "it was still finishing its own two"
    assert stopping.popen.wait(timeout=40) == 0
    verdict = await verify(db, subs, timeout_s=30)
    print(verdict.line("prefetch-handed-back"))
    assert (verdict.completed, verdict.lost, verdict.multi_attempt) == (8, 0, 0)
    assert '"handed_back": 2' in stopping.output() or '"handed_back":2' in stopping.output()


async def _completed(db: asyncpg.Pool, ids: list[UUID]) -> bool:
    done = await db.fetchval(
        "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND status = 'completed'", ids
    )
    return bool(done == len(ids))


async def _true(value: bool) -> bool:
    return value
