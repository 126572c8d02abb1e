"""Chunks of a page: windows of at most CHUNK_CHARS characters that overlap by about
CHUNK_OVERLAP, cut between words, never across pages (a hit names one page).

Deterministic on purpose: a page parsed again (a redelivered task re-doing its last batch)
yields the same (page, chunk_index, content), so its rows are skipped, not duplicated.
Changing these numbers changes chunk identity: reindex documents after doing so.
"""

CHUNK_CHARS = 1000
CHUNK_OVERLAP = 200


def normalize(text: str) -> str:
    """One space between words: PDF text comes with layout whitespace that means nothing."""
    return " ".join(text.split())


def chunk_text(text: str, size: int = CHUNK_CHARS, overlap: int = CHUNK_OVERLAP) -> list[str]:
    """The chunks of one page's text, its whitespace normalized: at most `size` characters each.

    A chunk ends between words unless one word fills it, and the next starts about `overlap`
    characters back, at a word's start. Blank text has none; ValueError unless 0 <= overlap < size.
    """
    if not 0 <= overlap < size:
        raise ValueError("overlap must be smaller than size")
    text = normalize(text)
    chunks: list[str] = []
    start, n = 0, len(text)
    while start < n:
        end = min(n, start + size)
        if end < n:  # cut at the last space inside the window, unless one word fills it
            space = text.rfind(" ", start + 1, end + 1)
            if space > start:
                end = space
        chunks.append(text[start:end])
        if end >= n:
            break
        # The next window starts `overlap` back, at the beginning of a word.
        nxt = end - overlap
        if nxt > start and text[nxt - 1] != " ":
            space = text.find(" ", nxt, end)
            nxt = space + 1 if space >= 0 else end
        start = nxt if nxt > start else end
        if text[start : start + 1] == " ":
            start += 1
    return chunks
