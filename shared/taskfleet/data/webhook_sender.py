"""The webhook deliverer: sends the due rows of webhook_deliveries, at least once
(docs/integrating.md#webhooks).

It runs in the API process, one per replica: a claimer and `slots` delivery loops, each owned by
the kernel's supervisor, so up to `slots` POSTs are in flight. The database
is its only input: a delivery row is written in the transaction of its event, and a claim
(FOR UPDATE SKIP LOCKED, so that replicas share the rows and never take the same one)
moves the row's `next_attempt_at` a lease ahead before the POST. A deliverer that dies
mid-POST leaves the row due again when the lease ends: the event goes again, with the same
`webhook-id`, which is how a receiver knows a duplicate. Each outcome is written only if the
row still holds this claim's attempt number (fencing).

A failure (no connection, a timeout, any status but 2xx; redirects are not followed) is
tried again after `backoff_s`, doubled each attempt up to `backoff_max_s`, the last try at
the deadline (`deadline_s` after the event); a failure at or past it makes the delivery
`failed`, for the user to see in the log and send again.
"""

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import structlog
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from standardwebhooks import Webhook

from taskfleet import __version__
from taskfleet.core import jsonx
from taskfleet.core.metrics import WEBHOOK_DELIVERIES
from taskfleet.core.supervisor import Supervisor
from taskfleet.data.webhooks import SECRET_FIELD
from taskfleet.security.crypto import Keyring, Unsealable
from taskfleet.security.targets import AllowedHosts, TargetRefused, check_literal

log = structlog.get_logger("taskfleet.webhooks")

OUTCOMES = ("delivered", "retried", "failed")
for _outcome in OUTCOMES:  # exported at 0 from the start, so that a rate() has a series
    WEBHOOK_DELIVERIES.labels(_outcome)

_CLAIM = """
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, last_attempt_at = now(),
    next_attempt_at = now() + make_interval(secs => $2)
FROM (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= now()
      ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due, webhook_endpoints e
WHERE d.id = due.id AND e.id = d.endpoint_id
RETURNING d.id, d.endpoint_id, d.payload, d.attempts, d.enqueued_at, e.url, e.secret,
    CASE WHEN e.previous_until > now() THEN e.previous_secret END AS previous_secret
"""
_DELIVERED = """
UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), response_status = $3,
    last_error = NULL
WHERE id = $1 AND attempts = $2 AND status = 'pending'
"""
_FAILED = """
UPDATE webhook_deliveries SET status = CASE WHEN $5 THEN 'failed' ELSE 'pending' END,
    next_attempt_at = $6, response_status = $3, last_error = $4
WHERE id = $1 AND attempts = $2 AND status = 'pending'
"""
_NEXT_DUE = """
SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM webhook_deliveries
WHERE status = 'pending'
"""


@dataclass(frozen=True)
class DeliveryPolicy:
    """How the deliverer sends (the API's WEBHOOK_* settings)."""

    allowed: AllowedHosts
    deadline_s: float = 86_400.0
    backoff_s: float = 5.0
    backoff_max_s: float = 3_600.0
    timeout_s: float = 10.0
    poll_s: float = 1.0
    slots: int = 16  # deliveries in flight at once, per deliverer

    @property
    def lease_s(self) -> float:
        """How long a claimed row stays claimed: past the request's timeout, with margin."""
        return self.timeout_s + 5

    def backoff(self, attempts: int) -> float:
        """The wait after the `attempts`-th failed attempt."""
        return float(min(self.backoff_max_s, self.backoff_s * 2.0 ** min(attempts - 1, 30)))


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status: int | None = None
    error: str | None = None
    final: bool = False  # not worth another attempt


class GuardedResolver(ThreadedResolver):
    """Resolves as usual, then drops the addresses the fleet may not reach: a name that
    resolves to a private address only is not connected to (security/targets.py)."""

    def __init__(self, allowed: AllowedHosts) -> None:
        super().__init__()
        self.allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of `host` the fleet may reach; OSError when there is none."""
        found = await super().resolve(host, port, family)
        if self.allowed.allows_name(host):
            return found
        kept = [r for r in found if self.allowed.allows_address(r["host"])]
        if not kept:
            raise OSError(f"{host} resolves to a private, loopback or reserved address only")
        return kept


class WebhookSender:
    """Claims due deliveries and POSTs them, up to `policy.slots` at once: a slow receiver
    holds one slot for its timeout, never the others' deliveries. The claimer and each slot
    are loops of the kernel's supervisor (`start`), which logs, counts and restarts them."""

    def __init__(self, pool: asyncpg.Pool, keyring: Keyring, policy: DeliveryPolicy) -> None:
        self.pool, self.keyring, self.policy = pool, keyring, policy
        self._busy = 0  # claimed rows queued for a slot or being sent
        self._freed = asyncio.Event()
        self._claimed: asyncio.Queue[asyncpg.Record] = asyncio.Queue()
        self._session: aiohttp.ClientSession | None = None

    def start(self, supervisor: Supervisor, name: str) -> list[str]:
        """The claimer and `policy.slots` delivery loops, under `supervisor`; their names, for
        stopping them. A loop that fails is restarted; the rows it held go again after their
        lease."""
        slots = [f"{name}-slot-{i}" for i in range(self.policy.slots)]
        supervisor.spawn(f"{name}-claim", self._claim_loop, kind="webhook-sender")
        for slot in slots:  # one metric label for them all
            supervisor.spawn(slot, self._slot_loop, kind="webhook-sender")
        return [f"{name}-claim", *slots]

    async def aclose(self) -> None:
        """Close the HTTP session (after the loops are stopped)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """One session for every slot, made in the running loop at first use."""
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.policy.allowed))
            timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self._session

    async def _claim_loop(self) -> None:
        """Forever: claim what is due into the free slots, then wait until a row is due, a
        slot frees or poll_s passes."""
        while True:
            self._freed.clear()  # before the count: a slot freed after it wakes _wait
            free = self.policy.slots - self._busy
            rows = await self._claim(free) if free > 0 else []
            for row in rows:
                self._busy += 1
                self._claimed.put_nowait(row)
            if len(rows) < free or free <= 0:
                await self._wait(await self._until_next_due())

    async def _slot_loop(self) -> None:
        """Forever: send the next claimed row."""
        while True:
            row = await self._claimed.get()
            try:
                await self._deliver(self.session, row)
            finally:
                self._busy -= 1
                self._freed.set()

    async def _claim(self, n: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(_CLAIM, n, self.policy.lease_s)
        return rows

    async def _wait(self, seconds: float) -> None:
        """Until a slot frees or `seconds` pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._freed.wait()

    async def _until_next_due(self) -> float:
        due_in = await self.pool.fetchval(_NEXT_DUE)
        if due_in is None:
            return self.policy.poll_s
        return max(0.01, min(self.policy.poll_s, float(due_in)))

    async def _deliver(self, session: aiohttp.ClientSession, row: asyncpg.Record) -> None:
        outcome = await self._attempt(session, row)
        if outcome.delivered:
            await self.pool.execute(_DELIVERED, row["id"], row["attempts"], outcome.status)
            WEBHOOK_DELIVERIES.labels("delivered").inc()
            return
        now = time.time()
        deadline = row["enqueued_at"].timestamp() + self.policy.deadline_s
        final = outcome.final or now >= deadline
        next_at = min(now + self.policy.backoff(row["attempts"]), deadline)
        await self.pool.execute(
            _FAILED, row["id"], row["attempts"], outcome.status, outcome.error, final,
            datetime.fromtimestamp(next_at, UTC),
        )  # fmt: skip
        WEBHOOK_DELIVERIES.labels("failed" if final else "retried").inc()
        log.info(
            "webhook_attempt_failed", delivery_id=str(row["id"]), attempt=row["attempts"],
            status=outcome.status, error=outcome.error, final=final,
        )  # fmt: skip

    async def _attempt(self, session: aiohttp.ClientSession, row: asyncpg.Record) -> Outcome:
        try:
            check_literal(row["url"], self.policy.allowed)
            secrets = [
                self.keyring.open(sealed, row=row["endpoint_id"], field=SECRET_FIELD)
                for sealed in (row["secret"], row["previous_secret"])
                if sealed is not None
            ]
        except TargetRefused as exc:
            return Outcome(False, error=f"refused: {exc}", final=True)
        except Unsealable as exc:  # a key this process lacks (yet): another attempt may have it
            return Outcome(False, error=f"secret: {exc}")
        body = jsonx.dumps(row["payload"])
        try:
            async with session.post(
                row["url"], data=body, headers=signed_headers(secrets, str(row["id"]), body),
                allow_redirects=False,
            ) as resp:  # fmt: skip
                await resp.read()
                if 200 <= resp.status < 300:
                    return Outcome(True, status=resp.status)
                return Outcome(False, status=resp.status, error=f"HTTP {resp.status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Outcome(False, error=_describe(exc))


def signed_headers(secrets: list[str], webhook_id: str, body: bytes) -> dict[str, str]:
    """The request's headers: the Standard Webhooks three, signed over the exact body, one
    signature per secret (the current one, and the one it replaced while that still signs),
    space-separated: a receiver holding either verifies it."""
    now = datetime.now(UTC)
    signature = " ".join(Webhook(secret).sign(webhook_id, now, body) for secret in secrets)
    return {
        "content-type": "application/json",
        "user-agent": f"taskfleet-webhooks/{__version__}",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def policy_of(**settings: Any) -> DeliveryPolicy:
    """A policy from WEBHOOK_* values (`allowed_hosts` as WEBHOOK_ALLOWED_HOSTS's text)."""
    allowed = AllowedHosts.parse(settings.pop("allowed_hosts", ""))
    return DeliveryPolicy(allowed=allowed, **settings)
