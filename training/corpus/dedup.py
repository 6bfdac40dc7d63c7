"""Document chunking, paragraph-level deduplication and the deterministic train/validation split."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from clean import paragraphs


@dataclass(frozen=True)
class Doc:
    id: str  # "package:path" or "package:path#k" for the k-th chunk of a long file
    source: str  # package name
    text: str


def chunk(doc: Doc, max_chars: int = 32768) -> list[Doc]:
    """A long document cut at paragraph boundaries (line ends inside a paragraph that is longer
    still) into pieces of at most about `max_chars`, so that a 40 MB dictionary is not one indivisible document for the
    validation split. Short documents come back unchanged."""
    if len(doc.text) <= max_chars:
        return [doc]
    pieces: list[list[str]] = [[]]
    size = 0
    for p in _pieces(paragraphs(doc.text), max_chars):
        if size > 0 and size + len(p) + 2 > max_chars:
            pieces.append([])
            size = 0
        pieces[-1].append(p)
        size += len(p) + 2
    return [Doc(f"{doc.id}#{k}", doc.source, "\n\n".join(ps)) for k, ps in enumerate(pieces)]


def _pieces(paras: list[str], max_chars: int) -> Iterator[str]:
    # A paragraph longer than a chunk (a list with no blank lines) is cut at line ends instead.
    for p in paras:
        if len(p) <= max_chars:
            yield p
            continue
        lines: list[str] = []
        size = 0
        for line in p.split("\n"):
            if size > 0 and size + len(line) + 1 > max_chars:
                yield "\n".join(lines)
                lines, size = [], 0
            lines.append(line)
            size += len(line) + 1
        if lines:
            yield "\n".join(lines)


def paragraph_key(paragraph: str) -> bytes:
    """What makes two paragraphs the same: their words, whatever the whitespace between them."""
    return hashlib.sha1(re.sub(r"\s+", " ", paragraph).strip().encode("utf-8")).digest()


def dedup_paragraphs(docs: Iterable[Doc], min_chars: int = 40, min_doc_chars: int = 200) -> Iterator[Doc]:
    """Each paragraph of at least `min_chars` characters kept only where it first appears (across all
    documents, in order); shorter ones ("Example:", "}") always kept, since they are not boilerplate.
    A document left with fewer than `min_doc_chars` characters is dropped."""
    seen: set[bytes] = set()
    for doc in docs:
        kept: list[str] = []
        for p in paragraphs(doc.text):
            if len(p.strip()) >= min_chars:
                key = paragraph_key(p)
                if key in seen:
                    continue
                seen.add(key)
            kept.append(p)
        text = "\n\n".join(kept)
        if len(text) >= min_doc_chars:
            yield Doc(doc.id, doc.source, text)


def validation_score(doc_id: str) -> float:
    """A number in [0, 1) fixed by the document's id alone (SHA-256), so the split never depends on
    the order or the machine."""
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big") / 2**64


def split(docs: Iterable[Doc], fraction: float, max_val_bytes: int) -> tuple[list[Doc], list[Doc]]:
    """(train, validation): a document goes to validation when its score is below `fraction` and the
    validation text (UTF-8, documents joined by a blank line) stays within `max_val_bytes`; every other
    document goes to train."""
    train: list[Doc] = []
    val: list[Doc] = []
    val_bytes = 0
    for doc in docs:
        size = len(doc.text.encode("utf-8")) + 2
        if validation_score(doc.id) < fraction and val_bytes + size <= max_val_bytes:
            val.append(doc)
            val_bytes += size
        else:
            train.append(doc)
    return train, val
