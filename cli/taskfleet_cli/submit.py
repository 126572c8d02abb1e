"""`taskfleet submit`: post a chat message through the API and, with --wait, follow it live
over the WebSocket: a progress bar on stderr, the reply on stdout as it streams."""

import argparse
import sys
import time
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from taskfleet.core.constants import TERMINAL
from taskfleet.core.settings import Settings
from taskfleet.security.auth import token_for

console = Console(stderr=True)


async def submit(settings: Settings, args: argparse.Namespace) -> int:
    """Post the message and print its task id; with --wait, follow it and print the reply.

    Exit 1 when the task ends otherwise than completed; SystemExit when the API refuses the
    message or the task is not finished after --timeout seconds."""
    base = args.url or f"http://{settings.api_host}:{settings.api_port}"
    token = args.token or token_for(settings, args.user, ttl_s=int(args.timeout) + 60)
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(base, headers=headers, timeout=timeout) as http:
        if not args.wait:
            accepted = await _post(http, args)
            print(accepted["task_id"])
            return 0
        # Listen first, so that not even the first event can be missed.
        async with http.ws_connect(f"/ws/tasks?token={token}", heartbeat=20) as ws:
            await ws.receive_json(timeout=10)  # the snapshot
            accepted = await _post(http, args)
            task = await follow(ws, accepted["task_id"], args.timeout)
    if task.get("status") != "completed":
        console.print(
            f"[red]task {accepted['task_id']} {task.get('status')}[/red]: {task.get('error')}"
        )
        return 1
    return 0


async def _post(http: aiohttp.ClientSession, args: argparse.Namespace) -> dict[str, Any]:
    payload = {"chat_id": args.chat, "content": args.text}
    if getattr(args, "priority", None):
        payload["priority"] = args.priority
    async with http.post("/api/chat/stream", json=payload) as resp:
        body: dict[str, Any] = await resp.json()
        if resp.status != 202:
            raise SystemExit(f"taskfleet: {resp.status} {body.get('error', body)}")
    return body


async def follow(
    ws: aiohttp.ClientWebSocketResponse, task_id: str, timeout_s: float
) -> dict[str, Any]:
    """Show the task's progress and stream its reply until it is terminal."""
    deadline = time.monotonic() + timeout_s
    printed = 0
    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True) as bar:
        row = bar.add_task("queued", total=1.0)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SystemExit(f"taskfleet: task {task_id} not finished after {timeout_s}s")
            event = await ws.receive_json(timeout=remaining)
            if event.get("task_id") != task_id:
                continue
            if event["type"] == "message.delta":
                text = event["delta"][max(0, printed - event["offset"]) :]
                sys.stdout.write(text)
                sys.stdout.flush()
                printed = max(printed, event["offset"] + len(event["delta"]))
                continue
            task = event.get("task") or {}
            status = task.get("status", "")
            stage = task.get("stage") or ""
            bar.update(
                row, completed=task.get("progress") or 0.0, description=f"{status} {stage}".strip()
            )
            if status in TERMINAL:
                reply = (task.get("output") or {}).get("reply") if status == "completed" else None
                if isinstance(reply, str) and len(reply) > printed:
                    sys.stdout.write(reply[printed:])
                sys.stdout.write("\n")
                return task
