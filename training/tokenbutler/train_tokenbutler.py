"""Trains a TokenButler v1 predictor (docs/kv-cache.md, shared spec tokenbutler.md) for a frozen Llama model.

The base model is run by this file's own few lines of PyTorch (embedding, RMSNorm, RoPE half-split, GQA
attention, SwiGLU) straight from model.safetensors, in f32, so nothing depends on a transformers version.
Targets are every layer >= 1's pre-softmax, pre-mask logits q.k/sqrt(d) (post-RoPE, K repeated over the GQA
group); the loss is their MSE over all L x L entries (spec §3.1, parity), mean over layers 1..N-1.

Writes to --out: tokenbutler.safetensors (reference tensor names, JSON header in the metadata),
tokenbutler-log.json (loss curve, held-out token-hit accuracy and simulated perplexities), and
tokenbutler-parity.json (predicted logits for a fixed window, for the TypeScript parity test).
"""
import argparse, json, math, os, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------- base model
class Base:
    """The frozen Llama model, f32, from a Hugging Face folder (config.json + model.safetensors)."""

    def __init__(self, folder, dev):
        cfg = json.load(open(os.path.join(folder, "config.json")))
        self.E = cfg["hidden_size"]
        self.N = cfg["num_hidden_layers"]
        self.H = cfg["num_attention_heads"]
        self.Hkv = cfg["num_key_value_heads"]
        self.d = cfg.get("head_dim") or self.E // self.H
        self.eps = cfg["rms_norm_eps"]
        rp = cfg.get("rope_parameters") or {}
        self.theta = float(rp.get("rope_theta", cfg.get("rope_theta", 10000.0)))
        if rp.get("rope_type", "default") != "default":
            raise SystemExit(f"{folder}: rope_type {rp.get('rope_type')} not handled here")
        w = {k: v.to(dev, torch.float32) for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
        self.w = w
        self.emb = w["model.embed_tokens.weight"]
        self.head = w.get("lm_head.weight", self.emb)
        inv = 1.0 / (self.theta ** (torch.arange(0, self.d, 2, dtype=torch.float64) / self.d))
        self.inv = inv.to(torch.float32).to(dev)
        self.dev = dev

    def rms(self, x, wt):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * wt

    def rope(self, x):  # x [B, heads, L, d]
        L = x.shape[2]
        ang = torch.arange(L, device=x.device, dtype=torch.float32)[:, None] * self.inv[None, :]
        cos, sin = ang.cos(), ang.sin()
        h = self.d // 2
        a, b = x[..., :h], x[..., h:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)

    @torch.no_grad()
    def run(self, ids, masks=None, want_logits=False, want_targets=True):
        """ids [B, L]. Returns (X0 = layer 0's normed input [B, L, E], targets [B, N-1, H, L, L] or None,
        logits [B, L, V] or None). masks: None or a function (layer, q, k) -> bool mask [B, H, L, L] (True = keep)
        applied to layers >= 1."""
        B, L = ids.shape
        x = self.emb[ids]
        X0, targets = None, []
        g = self.H // self.Hkv
        last = self.N if want_logits else self.N - 1
        for l in range(self.N):
            p = f"model.layers.{l}."
            h = self.rms(x, self.w[p + "input_layernorm.weight"])
            if l == 0:
                X0 = h
            q = (h @ self.w[p + "self_attn.q_proj.weight"].T).view(B, L, self.H, self.d).transpose(1, 2)
            k = (h @ self.w[p + "self_attn.k_proj.weight"].T).view(B, L, self.Hkv, self.d).transpose(1, 2)
            v = (h @ self.w[p + "self_attn.v_proj.weight"].T).view(B, L, self.Hkv, self.d).transpose(1, 2)
            q, k = self.rope(q), self.rope(k)
            k = k.repeat_interleave(g, dim=1)
            v = v.repeat_interleave(g, dim=1)
            if l >= 1 and want_targets:
                targets.append((q @ k.transpose(-1, -2)) / math.sqrt(self.d))
            if l == self.N - 1 and not want_logits:
                break
            if l >= 1 and masks is not None:
                m = masks(l, q, k)
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
            else:
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + a.transpose(1, 2).reshape(B, L, self.H * self.d) @ self.w[p + "self_attn.o_proj.weight"].T
            h2 = self.rms(x, self.w[p + "post_attention_layernorm.weight"])
            gate = h2 @ self.w[p + "mlp.gate_proj.weight"].T
            up = h2 @ self.w[p + "mlp.up_proj.weight"].T
            x = x + (F.silu(gate) * up) @ self.w[p + "mlp.down_proj.weight"].T
        logits = None
        if want_logits:
            logits = self.rms(x, self.w["model.norm.weight"]) @ self.head.T
        tg = torch.stack(targets, 1) if want_targets else None
        return X0, tg, logits


# ------------------------------------------------------------------------------------------------ predictor
def llama3_inv_freq(base, dim, dev):
    """Spec §2.1: always llama3-style scaling (factor 32, low 1, high 4, original 8192)."""
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    out = inv.clone()
    for i in range(len(inv)):
        lam = 2 * math.pi / inv[i].item()
        if lam < 8192 / 4:
            out[i] = inv[i]
        elif lam > 8192 / 1:
            out[i] = inv[i] / 32
        else:
            s = (8192 / lam - 1) / (4 - 1)
            out[i] = (1 - s) * inv[i] / 32 + s * inv[i]
    return out.to(torch.float32).to(dev)


def rope_any(x, inv):  # x [..., L, dim] with positions along dim -2
    L = x.shape[-2]
    ang = torch.arange(L, device=x.device, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos(), ang.sin()
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)


class Predictor(nn.Module):
    def __init__(self, E, N, H, rho, dp, I, theta):
        super().__init__()
        assert E % (4 * H) == 0 and (E // rho) % H == 0, "TokenButler needs E % 4H == 0 and (E/rho) % H == 0"
        self.E, self.N, self.H, self.rho, self.dp, self.I = E, N, H, rho, dp, I
        r = E // rho
        self.r, self.e = r, r // H
        self.input_proj = nn.Linear(E, r, bias=False)
        self.q_proj_attn = nn.Linear(r, r, bias=False)
        self.k_proj_attn = nn.Linear(r, r, bias=False)
        self.v_proj_attn = nn.Linear(r, r, bias=False)
        self.norm1 = nn.LayerNorm(r, eps=1e-5)
        self.ffn = nn.Sequential(nn.Linear(r, 2 * r), nn.GELU(), nn.Linear(2 * r, E))
        self.norm2 = nn.LayerNorm(E, eps=1e-5)  # unused, kept so the parameter count matches the spec's formula
        self.q_proj_importance = nn.Sequential(nn.Linear(E, I, bias=False), nn.SiLU(), nn.Linear(I, N * H * dp, bias=False))
        self.k_proj_importance = nn.Sequential(nn.Linear(E, I, bias=False), nn.SiLU(), nn.Linear(I, N * H * dp, bias=False))
        self.theta = theta

    def forward(self, X):
        """X [B, L, E] -> (Qt, Kt) [B, H, N, L, dp], RoPE'd; slot sigma = j*N + l reads [:, j, l]."""
        B, L, _ = X.shape
        dev = X.device
        R = self.input_proj(X)
        sh = lambda t: t.view(B, L, self.H, self.e).transpose(1, 2)
        ie = llama3_inv_freq(self.theta, self.e, dev)
        q = rope_any(sh(self.q_proj_attn(R)), ie)
        k = rope_any(sh(self.k_proj_attn(R)), ie)
        v = sh(self.v_proj_attn(R))
        A = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, L, self.r)
        A = self.norm1(A)
        Fh = self.ffn(A)
        if self.training:
            Fh = F.dropout(Fh, 0.1)
        Z = X + Fh
        idp = llama3_inv_freq(self.theta, self.dp, dev)
        Qt = self.q_proj_importance(Z).view(B, L, self.H, self.N, self.dp).permute(0, 2, 3, 1, 4)
        Kt = self.k_proj_importance(Z).view(B, L, self.H, self.N, self.dp).permute(0, 2, 3, 1, 4)
        return rope_any(Qt, idp), rope_any(Kt, idp)

    def logits(self, X):
        """Predicted logits for consumer layers 1..N-1: [B, N-1, H, L, L] (same layout as the targets)."""
        Qt, Kt = self(X)
        S = (Qt[:, :, 1:] @ Kt[:, :, 1:].transpose(-1, -2)) / math.sqrt(self.dp)  # [B, H, N-1, L, L]
        return S.transpose(1, 2)


def spec_param_count(E, N, H, rho, dp, I):
    r = E // rho
    return E * r + 3 * r * r + 2 * r + 2 * E + r * 2 * r + 2 * r + 2 * r * E + E + 2 * (E * I + I * N * H * dp)


# ------------------------------------------------------------------------------------- selection + evaluation
def budgets(L, keep, dev):
    """K_i = min(ceil(fround(fround(n) * fround(keep))), n), n = i + 1 (spec §3.2), computed in f32."""
    n = torch.arange(1, L + 1, dtype=torch.float32, device=dev)
    k = torch.ceil(n * torch.tensor(keep, dtype=torch.float32, device=dev))
    return torch.minimum(k, n).to(torch.int64)


def topk_mask(scores, keep):
    """scores [B, H, L, L] -> bool mask: per row i, the top-K_i causal entries (ties -> lower t) plus sinks 0..3."""
    B, H, L, _ = scores.shape
    dev = scores.device
    causal = torch.ones(L, L, dtype=torch.bool, device=dev).tril()
    s = scores.masked_fill(~causal, float("-inf"))
    order = torch.sort(s, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(L, device=dev).expand_as(order).contiguous())
    K = budgets(L, keep, dev)[:, None]
    m = (rank < K) & causal
    m[..., :, :4] |= causal[:, :4]
    return m


@torch.no_grad()
def evaluate(base, pred, ids, keep):
    """Held-out: dense / oracle / TokenButler simulated perplexity at `keep`, token-hit accuracy, MSE."""
    pred.eval()
    X0, tgt, dense_logits = base.run(ids, want_logits=True)
    S = pred.logits(X0)
    mse = F.mse_loss(S, tgt).item()
    L = ids.shape[1]
    # token hit (spec §3.5): last query row, k = floor(0.5 L), raw logits
    kk = L // 2
    a = torch.topk(S[:, :, :, -1, :], kk, dim=-1).indices
    b = torch.topk(tgt[:, :, :, -1, :], kk, dim=-1).indices
    hit = (torch.zeros(*a.shape[:-1], L, device=a.device).scatter_(-1, a, 1) *
           torch.zeros(*b.shape[:-1], L, device=b.device).scatter_(-1, b, 1)).sum(-1) / kk
    def nll(logits):
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).item()
    oracle = lambda l, q, k: topk_mask((q @ k.transpose(-1, -2)), keep)
    butler = lambda l, q, k: topk_mask(S[:, l - 1], keep)
    _, _, lo = base.run(ids, masks=oracle, want_logits=True, want_targets=False)
    _, _, lb = base.run(ids, masks=butler, want_logits=True, want_targets=False)
    pred.train()
    return {"mse": mse, "token_hit": hit.mean().item(), "keep": keep,
            "ppl_dense": math.exp(nll(dense_logits)), "ppl_oracle": math.exp(nll(lo)), "ppl_tokenbutler": math.exp(nll(lb))}


# ------------------------------------------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="uint16 token ids, documents joined with EOS")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=170.0, help="training time budget (hard)")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rho", type=int, default=8)
    ap.add_argument("--dprime", type=int, default=16)
    ap.add_argument("--intdim", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--heldout", type=float, default=0.05)
    ap.add_argument("--eval-keep", type=float, default=0.5)
    ap.add_argument("--causal-loss", action="store_true", help="ablation: loss over causal entries only")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    log(f"device {dev} {torch.cuda.get_device_name(0) if dev == 'cuda' else ''} torch {torch.__version__}")

    base = Base(a.model, dev)
    toks = torch.from_numpy(np.fromfile(a.tokens, dtype=np.uint16).astype(np.int64))
    n_hold = int(len(toks) * a.heldout)
    train, hold = toks[:-n_hold].to(dev), toks[-n_hold:].to(dev)
    L = a.seq
    hold_ids = torch.stack([hold[i * L:(i + 1) * L] for i in range(min(8, len(hold) // L))])
    log(f"tokens: {len(toks)} ({len(train)} train, {len(hold)} held out); held-out eval windows {hold_ids.shape[0]}x{L}")

    # sanity: the base model's own loss on held-out text (the model card says ~2.6 nats on validation text)
    with torch.no_grad():
        _, _, lg = base.run(hold_ids, want_logits=True, want_targets=False)
        base_nll = F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), hold_ids[:, 1:].reshape(-1)).item()
    log(f"base model held-out NLL {base_nll:.4f} nats (ppl {math.exp(base_nll):.2f})")
    if not (0.5 < base_nll < 6):
        raise SystemExit("base model NLL is implausible: loading or forward is wrong")

    pred = Predictor(base.E, base.N, base.H, a.rho, a.dprime, a.intdim, base.theta).to(dev)
    n_params = sum(p.numel() for p in pred.parameters())
    want = spec_param_count(base.E, base.N, base.H, a.rho, a.dprime, a.intdim)
    base_params = sum(v.numel() for k, v in base.w.items())
    log(f"predictor parameters {n_params} (spec formula {want}), {100 * n_params / base_params:.2f}% of the model")
    assert n_params == want
    opt = torch.optim.AdamW(pred.parameters(), lr=a.lr, weight_decay=0.01)
    causal = torch.ones(L, L, dtype=torch.bool, device=dev).tril()

    gen = torch.Generator(device="cpu").manual_seed(42)
    total_steps, step, curve, evals = 2000, 0, [], []
    best, best_state = None, None
    t_train = time.time()
    eval_at = [0.25, 0.5, 0.75]
    skipped = 0
    while True:
        el = time.time() - t_train
        if el > a.seconds or step >= total_steps:
            break
        if step == 20:  # calibrate the schedule length to the time budget
            per = el / 20
            total_steps = max(40, int(a.seconds / per))
            log(f"{per * 1000:.1f} ms/step -> schedule of {total_steps} steps")
        warm = max(1, total_steps // 10)
        lr = a.lr * (step + 1) / warm if step < warm else a.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total_steps - warm)))
        for gp in opt.param_groups:
            gp["lr"] = lr
        starts = torch.randint(0, len(train) - L, (a.batch,), generator=gen)
        ids = torch.stack([train[s:s + L] for s in starts.tolist()])
        X0, tgt, _ = base.run(ids)
        S = pred.logits(X0)
        if a.causal_loss:
            loss = ((S - tgt) ** 2).masked_select(causal).mean()
        else:
            loss = F.mse_loss(S, tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(pred.parameters(), 20.0).item()
        if gn > 20000 or not math.isfinite(gn):
            skipped += 1
        else:
            opt.step()
        if step % 50 == 0:
            curve.append({"step": step, "loss": loss.item(), "grad_norm": gn, "lr": lr, "t": time.time() - t_train})
            log(f"step {step}/{total_steps} loss {loss.item():.4f} gn {gn:.2f} lr {lr:.2e}")
        if eval_at and step >= eval_at[0] * total_steps and step > 20:
            eval_at.pop(0)
            ev = evaluate(base, pred, hold_ids, a.eval_keep)
            ev["step"] = step
            evals.append(ev)
            log(f"eval {ev}")
            if best is None or ev["ppl_tokenbutler"] < best:
                best, best_state = ev["ppl_tokenbutler"], {k: v.detach().clone() for k, v in pred.state_dict().items()}
        step += 1
    train_s = time.time() - t_train
    ev = evaluate(base, pred, hold_ids, a.eval_keep)
    ev["step"] = step
    evals.append(ev)
    log(f"final eval {ev}")
    if best is not None and best < ev["ppl_tokenbutler"]:
        pred.load_state_dict(best_state)
        log(f"keeping the checkpoint with held-out TokenButler ppl {best:.4f}")
    # stored in f16 (half the bytes); every number below and the parity fixture use the rounded weights
    with torch.no_grad():
        for prm in pred.parameters():
            prm.copy_(prm.half().float())
    ev16 = evaluate(base, pred, hold_ids, a.eval_keep)
    log(f"f16-rounded eval {ev16}")
    extra = {f"keep_{kp}": evaluate(base, pred, hold_ids, kp) for kp in (0.4, 0.6)}
    log(f"other keeps {extra}")

    # export (spec §2.3): reference names, plus the header as metadata
    pred.eval()
    sd = {k: v.detach().half().cpu().contiguous() for k, v in pred.state_dict().items()}
    header = {"E": base.E, "N": base.N, "H": base.H, "rho": a.rho, "dprime": a.dprime, "intdim": a.intdim,
              "rope_theta": base.theta, "rope_scaling": "llama3 factor 32, low 1, high 4, original 8192",
              "slot": "sigma = head * N + layer", "training_keep": a.eval_keep, "loss": "causal" if a.causal_loss else "all L x L entries",
              "tokens_seen": step * a.batch * L, "steps": step, "train_seconds": round(train_s, 1), "parameters": n_params, "dtype": "f16"}
    save_file(sd, os.path.join(a.out, "tokenbutler.safetensors"), metadata={"tokenbutler": json.dumps(header)})

    # parity fixture: the first 32 held-out tokens, exact f32 (no TF32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        pid = hold[:32][None]
        X0, _, _ = base.run(pid)
        S = pred.logits(X0)[0]  # [N-1, H, L, L]
        parity = {"ids": pid[0].tolist(), "last_row": S[:, :, -1, :].cpu().tolist(), "row_10": S[:, :, 10, :11].cpu().tolist(),
                  "x0_first_row_head": X0[0, 0, :8].cpu().tolist()}
    json.dump(parity, open(os.path.join(a.out, "tokenbutler-parity.json"), "w"))
    json.dump({"header": header, "base_heldout_nll": base_nll, "curve": curve, "evals": evals, "f16_eval": ev16, "final_other_keeps": extra,
               "skipped_updates": skipped, "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
               "torch": torch.__version__, "heldout_tokens": len(hold), "train_tokens": len(train)},
              open(os.path.join(a.out, "tokenbutler-log.json"), "w"), indent=1)
    log("done")


if __name__ == "__main__":
    main()
