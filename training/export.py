"""Exports a trained run as a Hugging Face model folder, checks it, measures it and samples from it.

    python3 training/export.py --run work/runs/frugal-ar-small --tokenizer work/tokenizer \\
        --data work/data --corpus .corpus --out models/frugal-ar-small --dtype float32

Writes to --out: config.json + model.safetensors (transformers' save_pretrained, weights in --dtype),
generation_config.json, tokenizer.json, tokenizer_config.json, training_log.jsonl (the run's log),
corpus-manifest.json (the corpus builder's manifest) and reference.json (parameter count, training
summary, validation loss of the exported weights, samples).

Checks, each fatal: the folder loads back with LlamaForCausalLM.from_pretrained and gives the same logits
as the weights in memory rounded to --dtype; the safetensors file holds only --dtype tensors; transformers'
AutoTokenizer encodes like the tokenizers library with <|bos|> first.
The validation loss is computed with f32 arithmetic on the exported weights over corpus-val's windows as
`frugal eval ppl` defines them (512 tokens, non-overlapping, no special tokens).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import build_model, count_parameters, evaluate, read_tokens  # noqa: E402

PROMPTS = [
    "The kernel",
    "A pipe is",
    "In Python, a list",
    "To install a package on Debian,",
    "Vim is",
    "Hacker, n.",
]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def last_record(log: list[dict], kind: str) -> dict | None:
    found = [r for r in log if r.get("kind") == kind]
    return found[-1] if found else None


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="train.py's --out folder (ckpt.pt, log.jsonl)")
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="folder with val.bin and data.json")
    ap.add_argument("--corpus", type=Path, help="folder with manifest.json")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    ap.add_argument("--new-tokens", type=int, default=64)
    args = ap.parse_args(argv)

    from safetensors import safe_open
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, GenerationConfig, LlamaForCausalLM

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = DTYPES[args.dtype]
    state = torch.load(args.run / "ckpt.pt", map_location="cpu", weights_only=False)
    cfg = state["config"]
    ctx = int(cfg["train"]["ctx"])
    model = build_model(cfg["model"])
    model.load_state_dict(state["model"])
    model = model.to(dtype)
    model.config.use_cache = True

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    model.save_pretrained(args.out)
    special = json.loads((args.tokenizer / "tokenizer_config.json").read_text())
    GenerationConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1).save_pretrained(args.out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(args.tokenizer / name, args.out / name)
    shutil.copy(args.run / "log.jsonl", args.out / "training_log.jsonl")
    if args.corpus and (args.corpus / "manifest.json").exists():
        shutil.copy(args.corpus / "manifest.json", args.out / "corpus-manifest.json")

    # The folder must load back as the same network.
    files = sorted(p.name for p in args.out.glob("*.safetensors"))
    if files != ["model.safetensors"]:
        raise SystemExit(f"export: expected one model.safetensors, found {files}")
    with safe_open(str(args.out / "model.safetensors"), framework="pt") as f:
        kinds = {f.get_slice(k).get_dtype() for k in f.keys()}
        n_stored = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    expected_kind = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}[args.dtype]
    if kinds != {expected_kind}:
        raise SystemExit(f"export: model.safetensors holds {kinds}, expected only {expected_kind}")
    loaded = LlamaForCausalLM.from_pretrained(args.out, dtype=torch.float32).to(device).eval()
    # The reference is a fresh f32 model holding the rounded weights: casting `model` itself back would
    # also round its RoPE inverse-frequency buffer, which no checkpoint stores.
    reference = build_model(cfg["model"])
    reference.load_state_dict({k: v.to(dtype).to(torch.float32) for k, v in state["model"].items()})
    reference = reference.to(device).eval()
    val = read_tokens(args.data / "val.bin", device)
    probe = val[: 2 * ctx].view(2, ctx)
    with torch.no_grad():
        a = loaded(input_ids=probe, use_cache=False).logits
        b = reference(input_ids=probe, use_cache=False).logits
    reload_diff = float((a - b).abs().max())
    if reload_diff > 1e-3:
        raise SystemExit(f"export: reloaded model's logits differ by {reload_diff}")
    del reference

    tok = Tokenizer.from_file(str(args.out / "tokenizer.json"))
    hf_tok = AutoTokenizer.from_pretrained(args.out)
    probe_text = "Pipes and FIFOs provide a unidirectional interprocess communication channel."
    ours = tok.encode(probe_text).ids
    theirs = hf_tok(probe_text)["input_ids"]
    if ours != theirs or ours[0] != 0:
        raise SystemExit(f"export: AutoTokenizer gives {theirs[:8]}..., tokenizers gives {ours[:8]}...")

    t0 = time.time()
    nll, scored = evaluate(loaded, val, ctx, 64, autocast=False)
    eval_s = time.time() - t0
    data = json.loads((args.data / "data.json").read_text())

    samples = []
    for prompt in PROMPTS:
        ids = torch.tensor([tok.encode(prompt).ids], device=device)
        entry = {"prompt": prompt}
        for mode, kwargs in (("greedy", {"do_sample": False}),
                             ("sampled", {"do_sample": True, "temperature": 0.8, "top_k": 40})):
            torch.manual_seed(0)
            out = loaded.generate(ids, max_new_tokens=args.new_tokens, eos_token_id=1, pad_token_id=1, **kwargs)
            entry[mode] = tok.decode(out[0, ids.size(1):].tolist())
        samples.append(entry)

    log = [json.loads(line) for line in (args.run / "log.jsonl").read_text().splitlines() if line.strip()]
    final = last_record(log, "final") or {}
    start = last_record(log, "start") or {}
    report = {
        "name": cfg["name"],
        "architecture": "LlamaForCausalLM",
        "parameters": count_parameters(loaded),
        "stored_parameters": n_stored,
        "dtype": args.dtype,
        "safetensors_bytes": (args.out / "model.safetensors").stat().st_size,
        "model": cfg["model"],
        "train": cfg["train"],
        "device": start.get("device"),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "steps": final.get("step"),
        "schedule_steps": final.get("total_steps"),
        "schedule_complete": final.get("complete"),
        "tokens_seen": final.get("tokens_seen"),
        "train_seconds": final.get("train_s"),
        "train_tokens_in_corpus": data["train_tokens"],
        "epochs": (final.get("tokens_seen") or 0) / data["train_tokens"],
        "final_train_loss": (last_record(log, "train") or {}).get("train_loss"),
        "val_during_training": {"loss": final.get("val_loss"), "ppl": final.get("val_ppl"), "arith": "bf16 autocast, f32 weights"},
        "val": {
            "what": "models/corpus-val.txt, frugal eval ppl windows (ctx 512, no special tokens), exported weights, f32 arithmetic",
            "loss_nats": nll, "ppl": math.exp(nll), "tokens_scored": scored, "text_bytes": data["val_bytes"],
            "bits_per_byte": nll * scored / math.log(2) / data["val_bytes"], "eval_seconds": eval_s,
        },
        "reload_max_logit_diff": reload_diff,
        "tokenizer": {"vocab": tok.get_vocab_size(), "bos": special["bos_token"], "eos": special["eos_token"],
                      "mask": special["mask_token"], "bytes_per_token_train": data["bytes_per_token_train"]},
        "samples": samples,
    }
    (args.out / "reference.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: report[k] for k in ("name", "parameters", "dtype", "tokens_seen", "val")}), file=sys.stderr)
    for s in samples:
        print(f"--- {s['prompt']!r}\n[greedy] {s['greedy']!r}\n[sampled] {s['sampled']!r}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
