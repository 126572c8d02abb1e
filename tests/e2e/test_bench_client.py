"""`taskfleet bench --via api --url A,B`: W1's client spreads its posts over every API replica
it is given (the capacity check in docs/capacity.md runs two), and every task completes."""

import asyncio
import functools
import json
import re
import sys
from collections.abc import Callable

import aiohttp

from taskfleet.core.settings import Settings
from tests.conftest import Proc, free_port, process_env, wait_for
from tests.e2e.test_api_process import _metrics_port, _ready

POSTS = re.compile(
    r'^taskfleet_http_requests_total\{[^}]*route="/api/chat/stream"[^}]*status="202"[^}]*\} (\S+)$',
    re.M,
)


async def _accepted(api: Proc) -> float:
    port = await wait_for(lambda: _metrics_port(api), what="the metrics port")
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return sum(float(v) for v in POSTS.findall(await resp.text()))


async def test_the_bench_client_shares_its_posts_between_the_api_replicas(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    env = process_env(settings)
    ports = [free_port(), free_port()]
    apis = [spawn(["api", "--port", str(p)], env, name=f"api{p}") for p in ports]
    spawn(["worker", "chat", "--concurrency", "8"], env, name="chat")
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    for url in urls:
        await wait_for(functools.partial(_ready, url), what=f"the API at {url}", timeout_s=30)
    bench = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskfleet_cli", "bench", "--via", "api", "--n", "40",
        "--timeout", "60", "--url", ",".join(urls),
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(bench.communicate(), timeout=120)
    assert bench.returncode == 0, out
    figures = json.loads(out.decode().strip().splitlines()[-1])
    assert (figures["completed"], figures["multi_attempt"]) == (40, 0)
    accepted = [await _accepted(api) for api in apis]
    assert sum(accepted) == 40
    assert min(accepted) >= 10, accepted  # both replicas took their share, not one alone
