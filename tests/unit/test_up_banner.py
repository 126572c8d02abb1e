"""The banner `taskfleet up` prints once the fleet is ready: a token that works, requests
that use it, links; framed so that it stands out among the log lines."""

import socket

from fleet_api.settings import ApiSettings
from taskfleet.security.auth import TokenVerifier
from taskfleet_cli.up import RULE, api_base, console_link, framed, not_ready, welcome_text

SECRET = "s" * 40


def settings(**overrides: object) -> ApiSettings:
    values: dict[str, object] = {
        "api_host": "127.0.0.1",
        "api_port": 8080,
        "api_metrics_port": 9100,
    }
    return ApiSettings.load(**{**values, **overrides})


def test_the_banner_gives_a_token_of_this_fleet_and_requests_that_use_it() -> None:
    s = settings()
    text = welcome_text(s, SECRET)
    token = next(
        line.split("export TOKEN=", 1)[1] for line in text.splitlines() if "export TOKEN=" in line
    )
    who = TokenVerifier(SECRET, issuer=s.jwt_issuer, audience=s.jwt_audience).verify(token)
    assert (who.user_id, who.scope) == ("demo", "user")
    assert "taskfleet is up: API on http://127.0.0.1:8080" in text
    assert "curl -s -X POST http://127.0.0.1:8080/api/chat/stream" in text
    assert "Authorization: Bearer $TOKEN" in text
    assert f"TASKFLEET_JWT_SECRET={SECRET} taskfleet submit 'hello' --wait" in text
    assert "http://127.0.0.1:8080/openapi.json" in text
    assert "http://127.0.0.1:9100/metrics" in text


def test_no_metrics_link_when_the_port_is_chosen_at_start() -> None:
    assert "/metrics" not in welcome_text(settings(api_metrics_port=0), SECRET)


def test_a_wildcard_host_is_reached_on_the_loopback() -> None:
    assert api_base(settings(api_host="0.0.0.0")) == "http://127.0.0.1:8080"


def test_the_banner_is_framed_and_names_what_is_not_ready() -> None:
    lines = framed("hello", []).strip("\n").splitlines()
    assert lines == [RULE, "hello", RULE]
    late = framed("hello", ["api", "doc-worker"])
    assert "not ready yet after 60s: api, doc-worker" in late
    assert late.strip("\n").splitlines()[-1] == RULE


async def test_an_api_that_does_not_answer_is_not_ready() -> None:
    with socket.socket() as sock:  # a port that nothing listens on while the check runs
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert await not_ready(settings(api_port=port), [], None) == ["api"]


async def test_without_a_database_the_banner_names_the_console_to_paste_a_token_into() -> None:
    text = await console_link(settings(), SECRET, None)
    assert text == "console: http://127.0.0.1:8080/console/ (paste the token to sign in)"
