"""Chunks of a page: bounded, overlapping, cut between words, and the same every time."""

import itertools

import pytest

from doc_worker.chunking import CHUNK_CHARS, chunk_text, normalize


def words_text(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


class TestChunkText:
    def test_empty_and_blank_pages_have_no_chunks(self) -> None:
        assert chunk_text("") == []
        assert chunk_text(" \n\t ") == []

    def test_a_short_page_is_one_chunk_with_whitespace_normalised(self) -> None:
        assert chunk_text("Hello,\n  world\tagain ") == ["Hello, world again"]

    def test_chunks_are_bounded_and_cut_between_words(self) -> None:
        text = words_text(2000)
        chunks = chunk_text(text, size=300, overlap=60)
        assert len(chunks) > 1
        vocabulary = set(text.split())
        for chunk in chunks:
            assert len(chunk) <= 300
            assert chunk == chunk.strip()
            assert set(chunk.split()) <= vocabulary  # no word was cut in two

    def test_every_word_is_in_some_chunk_in_order(self) -> None:
        text = words_text(1500)
        chunks = chunk_text(text, size=250, overlap=50)
        covered = [w for chunk in chunks for w in chunk.split()]
        # Overlap repeats words; dropping repeats gives back the text.
        unique = list(dict.fromkeys(covered))
        assert unique == text.split()

    def test_consecutive_chunks_overlap(self) -> None:
        chunks = chunk_text(words_text(1000), size=200, overlap=50)
        for left, right in itertools.pairwise(chunks):
            shared = set(left.split()) & set(right.split())
            assert shared, (left[-60:], right[:60])
            assert right.split()[0] in left.split()

    def test_a_word_longer_than_a_chunk_is_cut_hard_and_nothing_is_lost(self) -> None:
        text = "a " + "x" * 2500 + " b"
        chunks = chunk_text(text, size=1000, overlap=100)
        assert all(len(c) <= 1000 for c in chunks)
        assert "".join(chunks).replace(" ", "") == text.replace(" ", "")

    def test_deterministic_so_a_page_parsed_again_yields_the_same_chunks(self) -> None:
        text = words_text(3000)
        assert chunk_text(text) == chunk_text(text)
        assert max(len(c) for c in chunk_text(text)) <= CHUNK_CHARS

    def test_overlap_must_be_smaller_than_size(self) -> None:
        with pytest.raises(ValueError, match="overlap"):
            chunk_text("abc", size=10, overlap=10)


def test_normalize_collapses_layout_whitespace() -> None:
    assert normalize("  a\n\nb \t c  ") == "a b c"
