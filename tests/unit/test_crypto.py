"""taskfleet.security.crypto: sealed values open only in their place, under a key the ring holds."""

from uuid import uuid4

import pytest

from taskfleet.core.errors import ConfigError
from taskfleet.core.settings import load_settings
from taskfleet.security.crypto import (
    DEV_KID,
    Keyring,
    UnknownKey,
    Unsealable,
    is_sealed,
    new_key,
    sealed_text,
)

K0, K1 = new_key("k0"), new_key("k1")


class TestSealing:
    def test_a_value_round_trips_and_the_ciphertext_does_not_show_it(self) -> None:
        ring, row = Keyring.from_text(K1), uuid4()
        value = {"to": ["bob@example.com"], "body": "the code is 4711", "n": [1, 2.5, None]}
        sealed = ring.seal(value, row=row, field="arguments")
        assert is_sealed(sealed)
        assert (sealed["kid"], sealed["f"]) == ("k1", "arguments")
        assert "4711" not in str(sealed)
        assert ring.open(sealed, row=row, field="arguments") == value
        # Two seals of one value differ (a fresh nonce each time)
        assert ring.seal(value, row=row, field="arguments")["c"] != sealed["c"]

    def test_another_row_or_field_does_not_open_it(self) -> None:
        ring, row = Keyring.from_text(K1), uuid4()
        sealed = ring.seal("secret", row=row, field="arguments")
        with pytest.raises(Unsealable, match="moved or altered"):
            ring.open(sealed, row=uuid4())
        with pytest.raises(Unsealable, match="'arguments' found where 'result' belongs"):
            ring.open(sealed, row=row, field="result")
        relabelled = sealed | {"f": "result"}
        with pytest.raises(Unsealable, match="moved or altered"):
            ring.open(relabelled, row=row)

    def test_tampering_fails(self) -> None:
        ring, row = Keyring.from_text(K1), uuid4()
        sealed = ring.seal("secret", row=row, field="f")
        flipped = sealed["c"][:-2] + ("A" if sealed["c"][-2] != "A" else "B") + sealed["c"][-1]
        with pytest.raises(Unsealable):
            ring.open(sealed | {"c": flipped}, row=row)
        with pytest.raises(Unsealable):
            ring.open(sealed | {"n": "!!not base64!!"}, row=row)

    def test_an_unknown_kid_fails_clearly_and_apart_from_tampering(self) -> None:
        row = uuid4()
        sealed = Keyring.from_text(K0).seal("secret", row=row, field="f")
        with pytest.raises(UnknownKey, match="key 'k0', which ENCRYPTION_KEYS does not hold") as e:
            Keyring.from_text(K1).open(sealed, row=row)
        assert e.value.kid == "k0"
        assert isinstance(e.value, Unsealable)  # whoever only knows Unsealable still sees it
        # A kid the ring holds, on a value that does not open: not an unknown key
        for broken in ({"c": sealed["c"][:-4] + "AAAA"}, {"kid": "k1"}):
            with pytest.raises(Unsealable, match="moved or altered") as e2:
                Keyring.from_text(f"{K1},{K0}").open(sealed | broken, row=row)
            assert not isinstance(e2.value, UnknownKey)

    def test_a_new_key_listed_second_only_opens(self) -> None:
        # Phase 1 of a rotation: k1 still seals; k0 (the new one) opens what others seal.
        row = uuid4()
        phase1 = Keyring.from_text(f"{K1},{K0}")
        assert phase1.seal("x", row=row, field="f")["kid"] == "k1"
        by_phase2 = Keyring.from_text(f"{K0},{K1}").seal("x", row=row, field="f")
        assert phase1.open(by_phase2, row=row) == "x"

    def test_older_keys_open_and_reseal_moves_values_to_the_current_one(self) -> None:
        row = uuid4()
        old = Keyring.from_text(K0).seal({"a": 1}, row=row, field="result")
        ring = Keyring.from_text(f"{K1},{K0}")
        assert ring.open(old, row=row) == {"a": 1}
        doc = {"call_id": "c", "result": old, "list": [old, "plain"]}
        new, count = ring.reseal(doc, row=row)
        assert count == 2
        assert {new["result"]["kid"], new["list"][0]["kid"]} == {"k1"}
        assert Keyring.from_text(K1).reveal(new, row=row) == {
            "call_id": "c",
            "result": {"a": 1},
            "list": [{"a": 1}, "plain"],
        }
        assert ring.reseal(new, row=row)[1] == 0  # idempotent

    def test_text_columns_hold_the_json_text_and_plain_text_stays_plain(self) -> None:
        ring, row = Keyring.from_text(K1), uuid4()
        text = ring.seal_text("The user's name is Ann.", row=row, field="fact")
        assert sealed_text(text) is not None
        assert ring.open_text(text, row=row, field="fact") == "The user's name is Ann."
        assert ring.open_text("written before sealing", row=row) == "written before sealing"


class TestBlindIndex:
    def test_equal_text_of_one_user_collides_and_nothing_else_does(self) -> None:
        ring = Keyring.from_text(f"{K1},{K0}")
        a = ring.blind_index("the user's name is ann", scope="alice")
        assert a == ring.blind_index("the user's name is ann", scope="alice")
        assert a.startswith("k1:")
        assert "ann" not in a
        assert a != ring.blind_index("the user's name is ann", scope="bob")
        assert a != ring.blind_index("the user's name is bo", scope="alice")
        old = Keyring.from_text(K0).blind_index("x", scope="alice")
        assert ring.blind_indexes("x", scope="alice")[1] == old


class TestKeysFromSettings:
    def test_bad_keys_are_one_line_errors_that_never_quote_the_key(self) -> None:
        for text, reason in [
            ("nocolon", "entry 1 is not kid:key"),
            ("k1:c2hvcnQ=", "not urlsafe base64 of 32 bytes"),
            (f"{K1},{K1}", "appears twice"),
            (" , ", "no key"),
        ]:
            with pytest.raises(ConfigError, match=reason) as caught:
                Keyring.from_text(text)
            assert "\n" not in str(caught.value)
            assert K1.split(":")[1] not in str(caught.value)

    def test_production_requires_keys_and_development_falls_back(self) -> None:
        with pytest.raises(ConfigError, match="ENCRYPTION_KEYS: required when TASKFLEET_ENV"):
            Keyring.from_settings(load_settings(TASKFLEET_ENV="production", ENCRYPTION_KEYS=None))
        dev = Keyring.from_settings(
            load_settings(TASKFLEET_ENV="development", ENCRYPTION_KEYS=None)
        )
        assert (dev.kid, dev.development) == (DEV_KID, True)
        mine = Keyring.from_settings(load_settings(ENCRYPTION_KEYS=f"{K1},{K0}"))
        assert (mine.kid, mine.kids, mine.development) == ("k1", ["k1", "k0"], False)

    def test_keygen_kids_are_checked(self) -> None:
        assert Keyring.from_text(new_key("prod-2025_a")).kid == "prod-2025_a"
        with pytest.raises(ConfigError, match="key id"):
            new_key("no spaces")
