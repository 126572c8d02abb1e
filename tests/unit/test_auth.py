"""taskfleet.security.auth: HS256 bearer tokens with a required exp, scopes, and TTL parsing."""

import base64
import json
import time
from typing import Any

import jwt
import pytest

from taskfleet.security.auth import (
    AUDIENCE,
    ISSUER,
    AuthError,
    Principal,
    TokenVerifier,
    issue_token,
    parse_ttl,
    verify_token,
)

SECRET = "unit-test-secret-" + "k" * 48


def signed(claims: dict[str, Any], secret: str = SECRET) -> str:
    """Hand-built claims, with our issuer, audience and a jti unless the test sets them."""
    ours = {"iss": ISSUER, "aud": AUDIENCE, "jti": "j-1", **claims}
    return jwt.encode({k: v for k, v in ours.items() if v is not None}, secret, algorithm="HS256")


def in_a_minute() -> int:
    return int(time.time()) + 60


@pytest.mark.parametrize("scope", ["user", "service", "admin"])
def test_issue_verify_round_trip(scope: Any) -> None:
    principal = verify_token(SECRET, issue_token(SECRET, "alice", scope=scope))
    assert principal == Principal(user_id="alice", scope=scope)


def test_issued_token_expires_after_its_ttl() -> None:
    claims = jwt.decode(
        issue_token(SECRET, "alice", ttl_s=90), SECRET, algorithms=["HS256"], audience=AUDIENCE
    )
    assert claims["exp"] - claims["iat"] == 90
    assert (claims["sub"], claims["iss"], claims["aud"]) == ("alice", ISSUER, AUDIENCE)
    assert len(claims["jti"]) == 32


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({"aud": "another-api"}, "Audience"),
        ({"iss": "someone-else"}, "issuer"),
        ({"aud": None}, "aud"),
        ({"iss": None}, "iss"),
        ({"jti": None}, "jti"),
        ({"jti": ""}, "jti"),
    ],
)
def test_issuer_audience_and_jti_are_required_and_ours(claims: dict[str, Any], error: str) -> None:
    with pytest.raises(AuthError, match=error):
        verify_token(SECRET, signed({"sub": "alice", "exp": in_a_minute(), **claims}))


def test_expired_token_is_rejected() -> None:
    with pytest.raises(AuthError, match="expired"):
        verify_token(SECRET, issue_token(SECRET, "alice", ttl_s=-10))


def test_token_signed_with_another_secret_is_rejected() -> None:
    token = issue_token("another-secret-" + "z" * 48, "alice")
    with pytest.raises(AuthError):
        verify_token(SECRET, token)


def test_alg_none_token_is_rejected() -> None:
    # PyJWT's annotation wants a key, but the "none" algorithm takes None (its docs' example).
    token = jwt.encode({"sub": "alice", "exp": in_a_minute()}, None, algorithm="none")  # type: ignore[arg-type]
    assert jwt.get_unverified_header(token)["alg"] == "none"
    with pytest.raises(AuthError):
        verify_token(SECRET, token)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_hand_built_alg_none_token_with_a_signature_is_rejected() -> None:
    """alg none with the segment of a valid token appended: the header must not pick the alg."""
    good = issue_token(SECRET, "alice", scope="admin")
    forged = ".".join(
        [
            _b64({"alg": "none", "typ": "JWT"}),
            _b64({"sub": "mallory", "scope": "admin", "exp": in_a_minute()}),
            good.rsplit(".", 1)[1],
        ]
    )
    with pytest.raises(AuthError):
        verify_token(SECRET, forged)


def test_other_hmac_algorithm_is_rejected() -> None:
    token = jwt.encode({"sub": "alice", "exp": in_a_minute()}, SECRET * 2, algorithm="HS512")
    with pytest.raises(AuthError):
        verify_token(SECRET * 2, token)


def test_token_without_exp_is_rejected() -> None:
    with pytest.raises(AuthError, match="exp"):
        verify_token(SECRET, signed({"sub": "alice", "scope": "user"}))


def test_token_without_sub_is_rejected() -> None:
    with pytest.raises(AuthError):
        verify_token(SECRET, signed({"scope": "user", "exp": in_a_minute()}))


def test_unknown_scope_is_rejected() -> None:
    with pytest.raises(AuthError, match="scope"):
        verify_token(SECRET, signed({"sub": "alice", "scope": "root", "exp": in_a_minute()}))


def test_subject_with_forbidden_characters_is_rejected() -> None:
    with pytest.raises(AuthError, match="subject"):
        verify_token(SECRET, signed({"sub": "alice bob", "exp": in_a_minute()}))


def test_missing_scope_means_user() -> None:
    principal = verify_token(SECRET, signed({"sub": "alice", "exp": in_a_minute()}))
    assert principal.scope == "user"


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c"])
def test_malformed_token_is_rejected(token: str) -> None:
    with pytest.raises(AuthError):
        verify_token(SECRET, token)


def test_may_act_for() -> None:
    user = Principal("alice", "user")
    assert user.may_act_for("alice") is True
    assert user.may_act_for("bob") is False
    assert Principal("svc", "service").may_act_for("bob") is True
    assert Principal("root", "admin").may_act_for("bob") is True


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604_800), ("120", 120)],
)
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1.5h", "15x", "h", "1w", "m15"])
def test_parse_ttl_bad_value(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_ttl(text)


@pytest.mark.parametrize("text", ["-5m", "-90"])
def test_parse_ttl_rejects_negative_durations(text: str) -> None:
    """A negative TTL would issue a token that is already expired (`taskfleet token`)."""
    with pytest.raises(ValueError, match="bad duration"):
        parse_ttl(text)


class TestTokenVerifier:
    def test_a_cached_token_is_refused_once_it_expires(self) -> None:
        verifier = TokenVerifier(SECRET)
        token = issue_token(SECRET, "alice", ttl_s=1)
        assert verifier.verify(token) == Principal("alice", "user")
        deadline = time.monotonic() + 5

        def still_accepted() -> bool:
            try:
                verifier.verify(token)
            except AuthError:
                return False
            return True

        while still_accepted():  # a cache that ignored `exp` would answer until the deadline
            assert time.monotonic() < deadline, "the cached token outlived its exp"
            time.sleep(0.05)
        with pytest.raises(AuthError, match="expired"):
            verifier.verify(token)

    def test_bad_tokens_are_refused_every_time(self) -> None:
        verifier = TokenVerifier(SECRET)
        forged = issue_token("another-secret-" + "x" * 40, "alice")
        for _ in range(2):
            with pytest.raises(AuthError, match=r"(?i)signature"):
                verifier.verify(forged)

    def test_the_cache_keeps_at_most_its_size(self) -> None:
        verifier = TokenVerifier(SECRET, size=3)
        tokens = [issue_token(SECRET, f"user-{i}") for i in range(5)]
        who = [verifier.verify(t).user_id for t in tokens]
        assert who == [f"user-{i}" for i in range(5)]
        assert len(verifier._verified) == 3
        assert list(verifier._verified) == tokens[2:]


def test_a_revoked_token_is_refused_even_when_cached() -> None:
    denied: set[str] = set()
    verifier = TokenVerifier(SECRET, revoked=denied.__contains__)
    token = issue_token(SECRET, "alice")
    who = verifier.verify(token)
    denied.add(who.jti)
    with pytest.raises(AuthError, match="revoked"):
        verifier.verify(token)
    assert verifier.verify(issue_token(SECRET, "alice")).user_id == "alice"  # another token
