"""The reference models' tokenizer (byte-level BPE) and the corpus encoded with it.

    python3 training/tokenizer.py train  --corpus .corpus --out work/tokenizer
    python3 training/tokenizer.py encode --corpus .corpus --tokenizer work/tokenizer --out work/data

`train` learns a byte-level BPE of 8192 tokens (GPT-2's pre-tokenizer and byte alphabet, so any text
encodes without unknown tokens) from the training split, with three special tokens at the start of the
vocabulary: <|bos|> (0), <|eos|> (1) and <|mask|> (2, unused by the autoregressive models, reserved for a
masked-diffusion model that shares this vocabulary). The post-processor puts <|bos|> before the text when
special tokens are asked for. Writes tokenizer.json and tokenizer_config.json.

`encode` writes train.bin (uint16: for each training document <|bos|> ids <|eos|>, concatenated) and
val.bin (uint16: the validation text encoded whole without special tokens, the way `frugal eval ppl`
encodes it), plus data.json with their lengths.

Needs the `tokenizers` and `numpy` packages (present on the GPU machine, not on the CPU machines).
"""

from __future__ import annotations

import argparse
import json
import lzma
import sys
import time
from pathlib import Path
from typing import Iterator

BOS, EOS, MASK = "<|bos|>", "<|eos|>", "<|mask|>"
SPECIALS = [BOS, EOS, MASK]
VOCAB_SIZE = 8192


def train_documents(corpus: Path, every: int = 1) -> Iterator[str]:
    """The texts of the training documents in train.jsonl.xz, every `every`-th one."""
    with lzma.open(corpus / "train.jsonl.xz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i % every == 0:
                yield json.loads(line)["text"]


def tokenizer_config(max_length: int) -> dict:
    """tokenizer_config.json: which strings are special and that a BOS goes first (transformers reads
    add_bos_token; the post-processor in tokenizer.json does the adding)."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "mask_token": MASK,
        "pad_token": EOS,
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": max_length,
        "clean_up_tokenization_spaces": False,
    }


def train(corpus: Path, out: Path, every: int, max_length: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    t0 = time.time()
    tok.train_from_iterator(train_documents(corpus, every), trainer=trainer)
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)]
    )
    ids = [tok.token_to_id(s) for s in SPECIALS]
    if ids != [0, 1, 2] or tok.get_vocab_size() != VOCAB_SIZE:
        raise SystemExit(f"tokenizer: expected specials at 0,1,2 and {VOCAB_SIZE} tokens, got {ids} and {tok.get_vocab_size()}")
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(max_length), indent=2) + "\n")
    sample = "The kernel schedules processes; Python's list.sort() is stable."
    enc = tok.encode(sample)
    print(f"tokenizer: {tok.get_vocab_size()} tokens in {time.time() - t0:.1f}s; {sample!r} -> {len(enc.ids)} ids "
          f"{enc.tokens[:12]}", file=sys.stderr)
    assert tok.decode(enc.ids) == sample, "tokenizer does not round-trip"


def encode(corpus: Path, tokenizer_dir: Path, out: Path) -> None:
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    t0 = time.time()
    texts = list(train_documents(corpus))
    chunks = []
    train_bytes = 0
    for start in range(0, len(texts), 512):
        batch = texts[start:start + 512]
        train_bytes += sum(len(t.encode("utf-8")) for t in batch)
        for enc in tok.encode_batch(batch, add_special_tokens=False):
            chunks.append(np.asarray([bos] + enc.ids + [eos], dtype=np.uint16))
    train_ids = np.concatenate(chunks)
    val_text = (corpus / "val.txt").read_text(encoding="utf-8")
    val_ids = np.asarray(tok.encode(val_text, add_special_tokens=False).ids, dtype=np.uint16)
    out.mkdir(parents=True, exist_ok=True)
    train_ids.tofile(out / "train.bin")
    val_ids.tofile(out / "val.bin")
    info = {
        "train_documents": len(texts), "train_tokens": int(train_ids.size), "train_bytes": train_bytes,
        "val_tokens": int(val_ids.size), "val_bytes": len(val_text.encode("utf-8")),
        "bytes_per_token_train": train_bytes / max(1, train_ids.size - 2 * len(texts)),
    }
    (out / "data.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"encode: {info} in {time.time() - t0:.1f}s", file=sys.stderr)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="learn the BPE and write tokenizer.json + tokenizer_config.json")
    t.add_argument("--corpus", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--every", type=int, default=1, help="learn from every n-th training document")
    t.add_argument("--max-length", type=int, default=512)
    e = sub.add_parser("encode", help="write train.bin and val.bin")
    e.add_argument("--corpus", type=Path, required=True)
    e.add_argument("--tokenizer", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "train":
        train(args.corpus, args.out, args.every, args.max_length)
    else:
        encode(args.corpus, args.tokenizer, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
