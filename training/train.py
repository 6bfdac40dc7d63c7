"""Trains one reference model (a transformers LlamaForCausalLM) on the encoded corpus, within a time budget.

    python3 training/train.py --config training/configs/frugal-ar-small.json \\
        --data work/data --out work/runs/frugal-ar-small --time-budget-min 2.5

Data: train.bin / val.bin from `tokenizer.py encode`. Each step takes `batch_size` windows of ctx + 1
tokens at random offsets of the packed training stream (documents are <|bos|> text <|eos|> back to back).
Optimizer: fused AdamW (weight decay on matrices only), linear warmup then cosine decay to min_lr_ratio of
the peak, gradient clipping; bf16 autocast with f32 weights; PyTorch's SDPA attention.

Schedule length: `max_steps` in the config, or, when it is null, fitted to the time budget: after a short
calibration the measured step time fixes the number of steps, which the checkpoint then keeps.
Checkpoint/resume: OUT/ckpt.pt holds the weights, the optimizer, the step, the schedule length and the
sampler's random state; a run that finds it continues from it, so a long schedule can be spread over
several budget-limited runs. Log: OUT/log.jsonl, one JSON object per line (kind "train", "eval", "final").
Validation loss is measured the way `frugal eval ppl` measures it: val.bin cut into consecutive
non-overlapping windows of ctx tokens, each token after the first in a window scored.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def load_config(path: Path) -> dict:
    """The run's JSON config: {"name", "model": {LlamaConfig fields}, "train": {...}}."""
    cfg = json.loads(path.read_text())
    for key in ("name", "model", "train"):
        if key not in cfg:
            raise SystemExit(f"{path}: missing field {key!r}")
    return cfg


def build_model(model_cfg: dict):
    """A freshly initialized LlamaForCausalLM with SDPA attention. rope_theta is passed the way the
    installed transformers takes it (rope_parameters in version 5, rope_theta before)."""
    import inspect

    from transformers import LlamaConfig, LlamaForCausalLM

    fields = dict(model_cfg)
    theta = float(fields.pop("rope_theta", 10000.0))
    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:
        fields["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    else:
        fields["rope_theta"] = theta
    config = LlamaConfig(**fields)
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config)
    if config.tie_word_embeddings:
        model.tie_weights()
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "embeddings not tied"
    head_dim = config.hidden_size // config.num_attention_heads
    inv = model.model.rotary_emb.inv_freq
    expected = theta ** (-2.0 / head_dim)
    assert abs(float(inv[1]) - expected) < 1e-6 * max(1.0, expected), f"rope theta not applied: {float(inv[1])} != {expected}"
    return model


def count_parameters(model) -> int:
    """Distinct parameters (a tied embedding counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def lr_at(step: int, total: int, warmup: int, peak: float, min_ratio: float) -> float:
    """Linear warmup over `warmup` steps, then cosine from `peak` down to `min_ratio * peak` at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def frugal_windows(n_tokens: int, ctx: int) -> list[tuple[int, int]]:
    """(start, length) of the windows `frugal eval ppl` scores: consecutive, non-overlapping, `ctx` long,
    a shorter last one kept when it has at least two tokens."""
    out = []
    for start in range(0, max(0, n_tokens - 1), ctx):
        length = min(ctx, n_tokens - start)
        if length >= 2:
            out.append((start, length))
    return out


@torch.no_grad()
def evaluate(model, val: torch.Tensor, ctx: int, batch: int, autocast: bool) -> tuple[float, int]:
    """(mean negative log-likelihood in nats, tokens scored) over the frugal windows of `val`."""
    was_training = model.training
    model.eval()
    windows = frugal_windows(val.numel(), ctx)
    total = torch.zeros((), dtype=torch.float64, device=val.device)
    count = 0
    full = [s for s, n in windows if n == ctx]
    groups = [(full[i:i + batch], ctx) for i in range(0, len(full), batch)]
    groups += [([s], n) for s, n in windows if n != ctx]  # the shorter last window, if any
    for starts, n in groups:
        ids = torch.stack([val[s:s + n] for s in starts])
        with torch.autocast(val.device.type, dtype=torch.bfloat16, enabled=autocast and val.is_cuda):
            logits = model(input_ids=ids, use_cache=False).logits
        nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1), reduction="sum")
        total += nll.double()
        count += ids.size(0) * (n - 1)
    model.train(was_training)
    return float(total) / count, count


class WindowSampler:
    """Random windows of ctx + 1 tokens from the packed training stream, drawn on the device with a
    generator whose state the checkpoint keeps."""

    def __init__(self, tokens: torch.Tensor, ctx: int, seed: int):
        self.tokens = tokens
        self.ctx = ctx
        self.gen = torch.Generator(device=tokens.device)
        self.gen.manual_seed(seed)
        self.offsets = torch.arange(ctx + 1, device=tokens.device)

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, self.tokens.numel() - self.ctx - 1, (batch,), generator=self.gen, device=self.tokens.device)
        w = self.tokens[starts[:, None] + self.offsets]
        return w[:, :-1], w[:, 1:]


def read_tokens(path: Path, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.fromfile(path, dtype=np.uint16).astype(np.int64)).to(device)


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="folder with train.bin and val.bin")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--time-budget-min", type=float, help="stop (and checkpoint) after this many minutes")
    ap.add_argument("--max-steps", type=int, help="override the config's max_steps")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)

    t_start = time.time()
    cfg = load_config(args.config)
    tc = cfg["train"]
    ctx = int(tc["ctx"])
    device = torch.device(args.device)
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(int(tc.get("seed", 0)))
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "log.jsonl"
    ckpt_path = args.out / "ckpt.pt"

    def log(record: dict) -> None:
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), file=sys.stderr, flush=True)

    model = build_model(cfg["model"]).to(device)
    n_params = count_parameters(model)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": float(tc["weight_decay"])}, {"params": no_decay, "weight_decay": 0.0}],
        lr=float(tc["lr"]), betas=tuple(tc.get("betas", (0.9, 0.95))), eps=1e-8, fused=use_cuda,
    )
    train_tokens = read_tokens(args.data / "train.bin", device)
    val_tokens = read_tokens(args.data / "val.bin", device)
    sampler = WindowSampler(train_tokens, ctx, int(tc.get("seed", 0)) + 1)

    step, tokens_seen, elapsed_before = 0, 0, 0.0
    total_steps = args.max_steps or tc.get("max_steps")
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sampler.gen.set_state(state["sampler"].cpu())
        step, tokens_seen, elapsed_before = state["step"], state["tokens_seen"], state["elapsed_s"]
        total_steps = state["total_steps"] or total_steps
        log({"kind": "resume", "step": step, "tokens_seen": tokens_seen, "total_steps": total_steps})
    else:
        log({"kind": "start", "name": cfg["name"], "params": n_params, "train_tokens": train_tokens.numel(),
             "val_tokens": val_tokens.numel(), "device": torch.cuda.get_device_name() if use_cuda else "cpu",
             "torch": torch.__version__, "config": cfg})

    batch = int(tc["batch_size"])
    warmup = int(tc["warmup_steps"])
    budget_s = args.time_budget_min * 60 if args.time_budget_min else None
    reserve_s = float(tc.get("reserve_s", 20.0))
    eval_every = int(tc.get("eval_every", 200))
    log_every = int(tc.get("log_every", 50))
    calibrate_at = step + int(tc.get("calibrate_steps", 30))
    if total_steps is None and budget_s is None:
        raise SystemExit("train.py: give max_steps in the config, --max-steps, or --time-budget-min")

    def elapsed() -> float:
        return time.time() - t_start

    def sync() -> None:
        if use_cuda:
            torch.cuda.synchronize()

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "total_steps": total_steps,
            "tokens_seen": tokens_seen, "sampler": sampler.gen.get_state(), "elapsed_s": elapsed_before + elapsed(),
            "config": cfg,
        })

    t0 = time.time()
    eval_s = 0.0
    if step == 0:
        sync()
        te = time.time()
        nll, _ = evaluate(model, val_tokens, ctx, int(tc.get("eval_batch", 64)), use_cuda)
        sync()
        eval_s = time.time() - te
        log({"kind": "eval", "step": 0, "tokens_seen": 0, "val_loss": nll, "val_ppl": math.exp(nll), "eval_s": eval_s})
    model.train()
    loss_sum = torch.zeros((), device=device)
    loss_n = 0
    last_ckpt = time.time()
    calib_t, calib_step = None, None
    while True:
        if total_steps is not None and step >= total_steps:
            break
        if budget_s is not None and elapsed() > budget_s - reserve_s:
            break
        lr = lr_at(step, total_steps or 10**9, warmup, float(tc["lr"]), float(tc.get("min_lr_ratio", 0.1)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = sampler.sample(batch)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_cuda):
            logits = model(input_ids=x, use_cache=False).logits
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(tc.get("grad_clip", 1.0)))
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_sum += loss.detach()
        loss_n += 1
        step += 1
        tokens_seen += batch * ctx

        if step == calibrate_at - 20:
            sync()
            calib_t, calib_step = time.time(), step
        if total_steps is None and step == calibrate_at and calib_t is not None:
            sync()
            step_s = (time.time() - calib_t) / (step - calib_step)
            left = budget_s - elapsed() - reserve_s
            # 5% slack: evaluations and checkpoints vary, and an unfinished cosine leaves the LR high.
            total_steps = step + int(0.95 * left / (step_s + eval_s / eval_every))
            log({"kind": "calibrate", "step": step, "step_s": step_s, "total_steps": total_steps,
                 "tokens_per_s": batch * ctx / step_s})
        if step % log_every == 0:
            mean = float(loss_sum) / loss_n
            dt = time.time() - t0
            log({"kind": "train", "step": step, "tokens_seen": tokens_seen, "lr": lr, "train_loss": mean,
                 "tokens_per_s": loss_n * batch * ctx / dt, "elapsed_s": elapsed_before + elapsed()})
            loss_sum.zero_()
            loss_n = 0
            t0 = time.time()
        if step % eval_every == 0:
            nll, _ = evaluate(model, val_tokens, ctx, int(tc.get("eval_batch", 64)), use_cuda)
            log({"kind": "eval", "step": step, "tokens_seen": tokens_seen, "val_loss": nll, "val_ppl": math.exp(nll)})
            t0 = time.time()
            loss_sum.zero_()
            loss_n = 0
        if time.time() - last_ckpt > float(tc.get("checkpoint_every_s", 120)):
            checkpoint()
            last_ckpt = time.time()

    checkpoint()
    nll, count = evaluate(model, val_tokens, ctx, int(tc.get("eval_batch", 64)), use_cuda)
    log({"kind": "final", "step": step, "total_steps": total_steps, "complete": total_steps is not None and step >= total_steps,
         "tokens_seen": tokens_seen, "val_loss": nll, "val_ppl": math.exp(nll), "val_tokens_scored": count,
         "params": n_params, "train_s": elapsed_before + elapsed(),
         "peak_gpu_bytes": torch.cuda.max_memory_allocated() if use_cuda else None})


if __name__ == "__main__":
    main(sys.argv[1:])
