"""Where a webhook may go (taskfleet.security.targets): public addresses; private, loopback,
link-local and reserved ones only when WEBHOOK_ALLOWED_HOSTS lists them, by name or range;
and the deliverer's backoff up to its cap."""

import pytest

from fleet_api.settings import ApiSettings
from taskfleet.core.errors import ConfigError
from taskfleet.data.webhook_sender import DeliveryPolicy, GuardedResolver, signed_headers
from taskfleet.security.targets import AllowedHosts, TargetRefused, check_literal, check_target

NONE = AllowedHosts()


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.7", "172.16.3.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
     "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1", "224.0.0.1"],
)  # fmt: skip
def test_a_non_global_address_is_refused_unless_listed(address: str) -> None:
    assert not NONE.allows_address(address)
    with pytest.raises(TargetRefused, match="private"):
        check_literal(f"http://{_host(address)}/hook", NONE)
    listed = AllowedHosts.parse(f"{address}")
    assert listed.allows_address(address)
    assert check_literal(f"http://{_host(address)}:8080/hook", listed) is None


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def test_a_public_address_is_allowed_and_a_name_is_left_to_resolve() -> None:
    assert NONE.allows_address("93.184.216.34")
    assert check_literal("https://93.184.216.34/x", NONE) is None
    assert check_literal("https://Example.COM/x", NONE) == "example.com"


def test_the_allowed_list_takes_names_and_ranges() -> None:
    allowed = AllowedHosts.parse(" receiver.internal., 10.0.0.0/8 ,fd00::/8,")
    assert allowed.allows_name("RECEIVER.internal")
    assert check_literal("http://receiver.internal/hook", allowed) is None
    assert allowed.allows_address("10.200.0.1")
    assert allowed.allows_address("fd12::1")
    assert not allowed.allows_address("192.168.0.1")
    assert not allowed.allows_address("not an address")
    for bad in ("10.0.0.0/33", "a b", "host/path"):
        with pytest.raises(ValueError, match="neither"):
            AllowedHosts.parse(bad)
    with pytest.raises(ConfigError, match="WEBHOOK_ALLOWED_HOSTS"):
        ApiSettings.load(WEBHOOK_ALLOWED_HOSTS="10.0.0.0/99")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "http"),
        ("http:///x", "http"),
        ("http://u:p@example.com/x", "credentials"),
        ("http://example.com:99999/x", "valid"),
        ("hTTp://\udac0\udeae\u00c4/x", "valid"),  # lone surrogates: schemathesis sent one
        ("http://example.com/\udc00", "valid"),
        ("http://" + "a" * 64 + ".com/x", "valid"),  # a label over 63 characters
    ],
)
def test_only_plain_http_urls_are_targets(url: str, why: str) -> None:
    with pytest.raises(TargetRefused, match=why):
        check_literal(url, AllowedHosts.parse("example.com"))


async def test_a_name_is_checked_by_every_address_it_resolves_to() -> None:
    with pytest.raises(TargetRefused, match="resolves to a private"):
        await check_target("http://localhost:8080/hook", NONE)
    await check_target("http://localhost:8080/hook", AllowedHosts.parse("127.0.0.1,::1"))
    await check_target("http://localhost:8080/hook", AllowedHosts.parse("localhost"))
    with pytest.raises(TargetRefused, match="does not resolve"):
        await check_target("http://no-such-host.invalid/hook", NONE)


async def test_the_senders_resolver_drops_what_it_may_not_reach() -> None:
    with pytest.raises(OSError, match="private"):
        await GuardedResolver(NONE).resolve("localhost", 80)
    found = await GuardedResolver(AllowedHosts.parse("127.0.0.0/8")).resolve("localhost", 80)
    assert {r["host"] for r in found} == {"127.0.0.1"}
    assert await GuardedResolver(AllowedHosts.parse("localhost")).resolve("localhost", 80)


def test_the_backoff_doubles_up_to_its_cap_and_the_headers_are_the_standard_three() -> None:
    policy = DeliveryPolicy(NONE, backoff_s=1, backoff_max_s=10, timeout_s=3)
    assert [policy.backoff(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert policy.lease_s > policy.timeout_s
    headers = signed_headers(["whsec_" + "QUJD" * 8], "id-1", b"{}")
    assert headers["webhook-id"] == "id-1"
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["webhook-timestamp"].isdigit()
    two = signed_headers(["whsec_" + "QUJD" * 8, "whsec_" + "REVG" * 8], "id-1", b"{}")
    assert len(two["webhook-signature"].split(" ")) == 2
