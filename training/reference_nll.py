"""Transformers' mean NLL of a Hugging Face model on a text file, windowed exactly as `frugal eval ppl`:
the whole text tokenized without special tokens, consecutive non-overlapping windows of --ctx tokens
(a last window shorter than 2 tokens dropped), the first --chunks windows kept, every token after the
first of a window scored given the tokens before it in that window. Float32, eager attention, no TF32.

    python3 training/reference_nll.py --model models/frugal-ar-base --data models/corpus-val.txt \
        --ctx 512 [--chunks 64] [--out result.json]
Prints one JSON line {"tokens", "nll", "ppl"} like `frugal eval ppl --json`.
"""
import argparse
import json
import math

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--chunks", type=int)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out")
    a = p.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="eager").to(device).eval()
    with open(a.data, encoding="utf-8") as f:
        ids = tok(f.read(), add_special_tokens=False)["input_ids"]
    windows = [ids[i : i + a.ctx] for i in range(0, len(ids) - 1, a.ctx)]
    windows = [w for w in windows if len(w) >= 2]
    if a.chunks is not None:
        windows = windows[: a.chunks]
    total, count = 0.0, 0
    with torch.no_grad():
        # equal-length windows batch together; the short last one runs alone
        groups: dict[int, list[list[int]]] = {}
        for w in windows:
            groups.setdefault(len(w), []).append(w)
        for length, ws in groups.items():
            for b in range(0, len(ws), a.batch):
                x = torch.tensor(ws[b : b + a.batch], device=device)
                logits = model(x).logits.double()
                logp = torch.log_softmax(logits[:, :-1], dim=-1)
                nll = -logp.gather(-1, x[:, 1:, None]).squeeze(-1)
                total += nll.sum().item()
                count += nll.numel()
    result = {"tokens": count, "nll": total / count, "ppl": math.exp(total / count)}
    line = json.dumps(result)
    print(line)
    if a.out:
        with open(a.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
