"""`taskfleet submit`: post a chat message through the API and, with --wait, follow it."""

import argparse
import asyncio
import time
from typing import Any

import aiohttp
from rich.console import Console

from taskfleet.auth import issue_token
from taskfleet.constants import TERMINAL
from taskfleet.settings import Settings

console = Console(stderr=True)


async def submit(settings: Settings, args: argparse.Namespace) -> int:
    base = args.url or f"http://{settings.api_host}:{settings.api_port}"
    token = issue_token(settings.require_jwt_secret(), args.user, ttl_s=int(args.timeout) + 60)
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base, headers=headers, timeout=timeout) as http:
        async with http.post(
            "/api/chat/stream", json={"chat_id": args.chat, "content": args.text}
        ) as resp:
            body = await resp.json()
            if resp.status != 202:
                console.print(f"[red]{resp.status}[/red] {body}")
                return 1
        task_id = body["task_id"]
        if not args.wait:
            print(task_id)
            return 0
        task = await follow(http, task_id, args.timeout)
        if task["status"] != "completed":
            console.print(f"[red]task {task_id} {task['status']}[/red]: {task.get('error')}")
            return 1
        print((task.get("output") or {}).get("reply", ""))
        return 0


async def follow(http: aiohttp.ClientSession, task_id: str, timeout_s: float) -> dict[str, Any]:
    """Poll the task until it is terminal, showing its status; live updates come over the WS."""
    deadline = time.monotonic() + timeout_s
    with console.status(f"task {task_id}: queued") as status:
        while True:
            async with http.get(f"/api/tasks/{task_id}") as resp:
                task: dict[str, Any] = await resp.json()
            status.update(f"task {task_id}: {task['status']} {task.get('stage') or ''}")
            if task["status"] in TERMINAL:
                return task
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} still {task['status']} after {timeout_s}s")
            await asyncio.sleep(0.2)
