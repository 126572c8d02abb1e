"""Time-ordered ids (taskfleet.core.ids): UUIDv7 as RFC 9562 lays it out, ordered by time."""

from uuid import RFC_4122

from taskfleet.core.ids import uuid7


def test_a_uuid7_is_version_7_of_the_rfc_variant() -> None:
    made = uuid7()
    assert (made.version, made.variant) == (7, RFC_4122)


def test_it_begins_with_its_millisecond() -> None:
    at_ns = 1_765_000_000_123_456_789
    made = uuid7(at_ns)
    assert made.int >> 80 == at_ns // 1_000_000
    assert made.hex.startswith(f"{at_ns // 1_000_000:012x}")


def test_ids_of_later_milliseconds_sort_after_and_the_rest_is_random() -> None:
    at_ns = 1_765_000_000_000_000_000
    earlier = [uuid7(at_ns) for _ in range(50)]
    later = [uuid7(at_ns + 1_000_000) for _ in range(50)]
    assert max(earlier) < min(later)
    # 74 random bits: ids of one millisecond do not repeat.
    assert len(set(earlier)) == 50
