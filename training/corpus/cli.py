"""JSON in, JSON out access to the corpus functions, for tests written in other languages.

    echo '{"op": "html", "text": "<p>a</p>"}' | python3 training/corpus/cli.py

Ops: html, roff, rst, pod, info, vimhelp, gcide (markup strippers, each followed by normalize, as the
builder does), normalize, dedup ({"docs": [[id, text], ...], "min_chars", "min_doc_chars"} -> the kept
[[id, text], ...]), chunk ({"text", "max_chars"} -> the pieces' texts) and split ({"ids", "fraction",
"texts"?, "max_val_bytes"?} -> {"train": ids, "val": ids}).
"""

from __future__ import annotations

import json
import sys

import clean
from dedup import Doc, chunk, dedup_paragraphs, split

STRIPPERS = {
    "html": clean.html_to_text,
    "roff": clean.roff_to_text,
    "rst": clean.rst_to_text,
    "pod": clean.pod_to_text,
    "info": clean.info_to_text,
    "vimhelp": clean.vimhelp_to_text,
    "gcide": clean.gcide_to_text,
    "normalize": lambda text: text,
}


def run(request: dict) -> object:
    """The answer to one request (see the module's doc)."""
    op = request.get("op")
    if op in STRIPPERS:
        return {"text": clean.normalize(STRIPPERS[op](request["text"]))}
    if op == "dedup":
        docs = [Doc(i, "test", t) for i, t in request["docs"]]
        kept = dedup_paragraphs(docs, min_chars=request.get("min_chars", 40),
                                min_doc_chars=request.get("min_doc_chars", 200))
        return {"docs": [[d.id, d.text] for d in kept]}
    if op == "chunk":
        return {"pieces": [d.text for d in chunk(Doc("x", "test", request["text"]), request["max_chars"])]}
    if op == "split":
        texts = request.get("texts") or ["" for _ in request["ids"]]
        docs = [Doc(i, "test", t) for i, t in zip(request["ids"], texts)]
        train, val = split(docs, request["fraction"], request.get("max_val_bytes", 1 << 62))
        return {"train": [d.id for d in train], "val": [d.id for d in val]}
    raise SystemExit(f"cli.py: unknown op {op!r}; expected one of {sorted(STRIPPERS) + ['dedup', 'chunk', 'split']}")


if __name__ == "__main__":
    sys.stdout.write(json.dumps(run(json.load(sys.stdin)), ensure_ascii=False))
