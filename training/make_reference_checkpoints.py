#!/usr/bin/env python3
"""Tiny random Hugging Face checkpoints of every architecture Frugal runs, with reference outputs.

Writes one folder per checkpoint (config.json, model.safetensors, generation_config.json,
tokenizer.json, tokenizer_config.json) and expected.json, which holds what transformers computes for
each: the token ids of the evaluation text, the windowed perplexity as `frugal eval ppl` defines it
(src/eval/perplexity.ts), logits for debugging, and a greedy continuation. test/eval/reference-nll.test.ts
checks Frugal against these numbers.

Random weights are drawn at scales that keep attention sharp and logits far from uniform (norm
weights and biases random too), so that a bug anywhere in the forward pass moves the perplexity by far
more than the test's tolerance. Needs torch, transformers 5, tokenizers, safetensors; references are
computed in float32 with TF32 off (plus a float64 CPU cross-check).

    python3 training/make_reference_checkpoints.py --corpus TEXT --eval test/fixtures/tiny/eval.txt \
        --out /tmp/tiny [--tar OUT.tar.gz]
"""
import argparse
import copy
import json
import math
import os
import shutil
import sys
import tarfile
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

CTX = 64
GREEDY_PROMPT = "The"
GREEDY_TOKENS = 20
SEED = 1234

# Pre-tokenizer splits of Llama 3 and Qwen2 (they differ in how digits group).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHAT_MESSAGES = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "Where were the Olmec heads found?"},
]

# Three byte-level BPE tokenizers in the styles of real checkpoints:
#   llama3: Split(Llama 3 regex) + ByteLevel, TemplateProcessing adding <s>, ignore_merges (as Llama 3)
#   qwen:   NFC + Split(Qwen2 regex) + ByteLevel, ByteLevel post-processor (no BOS), ChatML template
#   gpt2:   ByteLevel with its own GPT-2 regex, no post-processor (SmolLM)
TOKENIZER_STYLES = {
    "llama3": {"vocab": 500, "specials": ["<unk>", "<s>", "</s>"], "bos": "<s>", "eos": "</s>", "unk": "<unk>"},
    "qwen": {"vocab": 400, "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "bos": None, "eos": "<|im_end|>",
             "pad": "<|endoftext|>", "chat_template": CHATML},
    "gpt2": {"vocab": 384, "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "bos": "<|endoftext|>",
             "eos": "<|endoftext|>", "unk": "<|endoftext|>"},
}


def llama3_rope(theta=500000.0):
    # original_max_position_embeddings 64 puts the three llama3 frequency bands (kept, smoothed,
    # divided by factor) all inside head_dim 16, so a short context exercises every branch
    return {"rope_type": "llama3", "rope_theta": theta, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64}


def default_rope(theta):
    return {"rope_type": "default", "rope_theta": theta}


def checkpoint_specs():
    """name -> (model class, config factory, tokenizer style, dtype to save); configs are built lazily so
    that one that this transformers refuses fails only its own checkpoint."""
    llama = lambda: LlamaConfig(  # noqa: E731
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=128, rms_norm_eps=1e-5, rope_parameters=llama3_rope(),
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, attention_bias=False, mlp_bias=False,
    )
    mistral = lambda: MistralConfig(  # noqa: E731
        vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=128, rms_norm_eps=1e-5,
        rope_parameters=default_rope(1e6), sliding_window=None, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    )
    qwen2 = lambda: Qwen2Config(  # noqa: E731
        vocab_size=416, hidden_size=96, intermediate_size=144, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, rope_parameters=default_rope(1e6),
        tie_word_embeddings=True, use_sliding_window=False, sliding_window=None, max_window_layers=2,
        bos_token_id=0, eos_token_id=2,
    )
    qwen3 = lambda: Qwen3Config(  # noqa: E731
        vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=128, rms_norm_eps=1e-6, rope_parameters=default_rope(1e6),
        tie_word_embeddings=True, use_sliding_window=False, sliding_window=None, max_window_layers=2, attention_bias=False,
        bos_token_id=0, eos_token_id=[2, 0],
    )
    smollm = lambda: LlamaConfig(  # noqa: E731
        vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=128, rms_norm_eps=1e-5, rope_parameters=default_rope(10000.0),
        tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
    )
    return {
        "llama": (LlamaForCausalLM, llama, "llama3", torch.float32),
        "llama-bf16": (LlamaForCausalLM, llama, "llama3", torch.bfloat16),
        "mistral": (MistralForCausalLM, mistral, "llama3", torch.float32),
        "qwen2": (Qwen2ForCausalLM, qwen2, "qwen", torch.float32),
        "qwen3": (Qwen3ForCausalLM, qwen3, "qwen", torch.float32),
        "smollm": (LlamaForCausalLM, smollm, "gpt2", torch.float32),
    }


PROBLEMS = []


def problem(msg):
    """Records something that makes the fixtures untrustworthy; the run still writes everything, then fails."""
    PROBLEMS.append(msg)
    print("PROBLEM:", msg, flush=True)


# ---------------------------------------------------------------- tokenizers

def train_tokenizer(style, corpus_lines):
    s = TOKENIZER_STYLES[style]
    if style == "llama3":
        try:
            bpe = models.BPE(ignore_merges=True)
        except TypeError:
            problem("this tokenizers has no BPE ignore_merges; the llama3-style tokenizer is trained without it")
            bpe = models.BPE()
    else:
        bpe = models.BPE()
    tok = Tokenizer(bpe)
    if style == "qwen":
        tok.normalizer = normalizers.NFC()
    if style == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        pattern = LLAMA3_PATTERN if style == "llama3" else QWEN2_PATTERN
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=s["vocab"], min_frequency=2, special_tokens=s["specials"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(corpus_lines, trainer=trainer)
    if style == "llama3":
        bos = s["bos"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, tok.token_to_id(bos))],
        )
    elif style == "qwen":
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def tokenizer_config(style, tok, max_positions):
    s = TOKENIZER_STYLES[style]
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": {
            str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                      "single_word": False, "special": True}
            for t in s["specials"]
        },
        "bos_token": s["bos"],
        "eos_token": s["eos"],
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_positions,
    }
    for key in ("unk", "pad"):
        if key in s:
            cfg[f"{key}_token"] = s[key]
    if "chat_template" in s:
        cfg["chat_template"] = s["chat_template"]
    return cfg


# ---------------------------------------------------------------- models

def randomize(model, seed):
    """Every parameter random, drawn in name order from one seeded generator (tied ones once)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda np: np[0]):
            if name.endswith("norm.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith("lm_head.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * (2.5 / math.sqrt(p.shape[1])))
            elif p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * (1.4 / math.sqrt(p.shape[1])))
            else:
                raise RuntimeError(f"no rule to randomize parameter {name} {tuple(p.shape)}")
    if model.config.tie_word_embeddings:
        model.tie_weights()
        if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
            problem(f"{type(model).__name__}: lm_head is not tied to embed_tokens in memory")


def rope_inv_freq(model):
    try:
        return [float(x) for x in model.model.rotary_emb.inv_freq.double().cpu()]
    except AttributeError:
        return None


def window_nll(model, ids, ctx, device):
    """As src/eval/perplexity.ts: consecutive windows of ctx, each scoring all but its first token."""
    total, count, first_logits = 0.0, 0, None
    for i in range(0, len(ids) - 1, ctx):
        w = ids[i:i + ctx]
        if len(w) < 2:
            continue
        x = torch.tensor([w], device=device)
        with torch.no_grad():
            logits = model(input_ids=x, use_cache=False).logits[0]
        logp = torch.log_softmax(logits.double(), dim=-1)
        target = torch.tensor(w[1:], device=device)
        total += -logp[:-1].gather(1, target[:, None]).sum().item()
        count += len(w) - 1
        if first_logits is None:
            first_logits = [float(v) for v in logits[-1, :16].float().cpu()]
    return count, total / count, first_logits


def greedy_by_recomputation(model, prompt, n, device):
    """Argmax continuation, recomputing the whole sequence each step; also the smallest top-2 logit gap."""
    ids, gaps = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits[0, -1]
            top = torch.topk(logits, 2).values
            gaps.append(float(top[0] - top[1]))
            ids.append(int(torch.argmax(logits)))
    return ids[len(prompt):], min(gaps)


def load_reference_model(folder, device):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    return model.float().to(device).eval()


def compare_state(saved, reloaded, name, dtype):
    """The reloaded model must hold exactly the weights that were saved (after the dtype round trip)."""
    want = {k: v.to(dtype).float() for k, v in saved.state_dict().items()}
    got = reloaded.state_dict()
    for k, v in want.items():
        if k not in got:
            problem(f"{name}: reloaded model lacks {k}")
        elif not torch.equal(got[k].float().cpu(), v.cpu()):
            problem(f"{name}: {k} differs after save and reload")


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


def legacy_config(config_json):
    """config.json in the transformers 4 form: rope_theta + rope_scaling instead of rope_parameters."""
    legacy = {k: v for k, v in config_json.items() if k != "rope_parameters"}
    if "dtype" in legacy:
        legacy["torch_dtype"] = legacy.pop("dtype")
    rp = dict(config_json["rope_parameters"])
    legacy["rope_theta"] = rp.pop("rope_theta")
    legacy["rope_scaling"] = rp if rp.get("rope_type", "default") != "default" else None
    return legacy


def reference(name, folder, tok_hf, tok_raw, text, config, device):
    """Everything expected.json records for one checkpoint folder."""
    model = load_reference_model(folder, device)
    # tokenizer.json means what the tokenizers library does with it; transformers must agree
    ids = tok_raw.encode(text, add_special_tokens=False).ids
    if tok_hf is not None and tok_hf(text, add_special_tokens=False)["input_ids"] != ids:
        problem(f"{name}: transformers and tokenizers disagree on the eval text ids")
    decoded = tok_raw.decode(ids, skip_special_tokens=False)
    tokens, nll, first_logits = window_nll(model, ids, CTX, device)

    model64 = copy.deepcopy(model).double().cpu()
    tokens64, nll64, _ = window_nll(model64, ids, CTX, "cpu")
    if tokens64 != tokens or abs(nll64 - nll) > 1e-5:
        problem(f"{name}: float32 GPU nll {nll} vs float64 CPU nll {nll64}")
    del model64

    with_special = tok_raw.encode(GREEDY_PROMPT, add_special_tokens=True).ids
    if tok_hf is not None and tok_hf(GREEDY_PROMPT)["input_ids"] != with_special:
        problem(f"{name}: transformers and tokenizers disagree on the prompt with special tokens")
    bos = config.bos_token_id
    prompt_ids = with_special if with_special[:1] == [bos] else [bos] + tok_raw.encode(GREEDY_PROMPT, add_special_tokens=False).ids
    greedy, min_gap = greedy_by_recomputation(model, prompt_ids, GREEDY_TOKENS, device)
    x = torch.tensor([prompt_ids], device=device)
    try:
        with torch.no_grad():
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=GREEDY_TOKENS,
                                 do_sample=False, pad_token_id=0)
        generated = out[0, len(prompt_ids):].tolist()
        if greedy[:len(generated)] != generated:
            problem(f"{name}: model.generate {generated} is not a prefix of the recomputed greedy {greedy}")
    except Exception:  # noqa: BLE001 - the recomputed greedy still stands
        problem(f"{name}: model.generate failed:\n{traceback.format_exc()}")
        generated = None

    entry = {
        "folder": name,
        "architecture": config.architectures[0] if getattr(config, "architectures", None) else type(model).__name__,
        "vocab_size": config.vocab_size,
        "tokenizer_vocab_size": tok_raw.get_vocab_size(),
        "tensors": safe_dtypes(folder),
        "rope_inv_freq": rope_inv_freq(model),
        "ctx": CTX,
        "tokens": tokens,
        "nll": nll,
        "nll_float64_cpu": nll64,
        "first_window_last_logits": first_logits,
        "decode_roundtrip": decoded == text,
        "ids": ids,
        "greedy": {
            "prompt": GREEDY_PROMPT,
            "prompt_with_special_tokens": with_special,
            "prompt_ids": prompt_ids,
            "ids": greedy,
            "generate_ids": generated,
            "min_top2_gap": min_gap,
        },
    }
    if tok_hf is not None and getattr(tok_hf, "chat_template", None):
        chat_text = tok_hf.apply_chat_template(CHAT_MESSAGES, tokenize=False, add_generation_prompt=True)
        chat_ids = tok_raw.encode(chat_text, add_special_tokens=False).ids
        if tok_hf(chat_text, add_special_tokens=False)["input_ids"] != chat_ids:
            problem(f"{name}: transformers and tokenizers disagree on the chat prompt ids")
        entry["chat"] = {"messages": CHAT_MESSAGES, "text": chat_text, "ids": chat_ids}
    if decoded != text:
        print(f"WARNING {name}: decode(encode(text)) != text", flush=True)
    print(f"{name}: {tokens} tokens, nll {nll:.6f} (f64 cpu {nll64:.6f}), greedy {greedy}, min gap {min_gap:.4g}", flush=True)
    return entry, model


def load_hf_tokenizer(name, folder):
    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception as e:  # noqa: BLE001 - recorded; the tokenizers library still gives the ids
        problem(f"{name}: AutoTokenizer cannot load the folder: {e!r}")
        return None


def safe_dtypes(folder):
    """name -> dtype of every tensor in the folder's model.safetensors."""
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        return {k: str(f.get_slice(k).get_dtype()) for k in sorted(f.keys())}


def build_checkpoint(name, index, cls, make_config, tok, style, dtype, built, expected, out, text, device):
    """Makes one checkpoint folder and its expected.json entry."""
    folder = os.path.join(out, name)
    if name == "llama-bf16":
        model = built["llama"]  # the same weights, stored in bf16
        config = model.config
    else:
        config = make_config()
        torch.manual_seed(SEED + index)
        model = cls(config)
        randomize(model, SEED + index)
        built[name] = model
    if tok.get_vocab_size() > config.vocab_size:
        problem(f"{name}: tokenizer vocab {tok.get_vocab_size()} > config vocab {config.vocab_size}")
    copy.deepcopy(model).to(dtype).save_pretrained(folder, safe_serialization=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    write_json(os.path.join(folder, "tokenizer_config.json"), tokenizer_config(style, tok, config.max_position_embeddings))
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        print(f"{name} config.json: {f.read()}", flush=True)

    tok_hf = load_hf_tokenizer(name, folder)
    saved_config = transformers.AutoConfig.from_pretrained(folder)
    entry, ref_model = reference(name, folder, tok_hf, Tokenizer.from_file(os.path.join(folder, "tokenizer.json")), text,
                                 saved_config, device)
    compare_state(model, ref_model.cpu(), name, dtype)
    expected["checkpoints"][name] = entry


def build_legacy(expected, out, text, device):
    """The llama checkpoint again, with its config.json in the transformers 4 form."""
    legacy_dir = os.path.join(out, "llama-legacy-config")
    shutil.copytree(os.path.join(out, "llama"), legacy_dir)
    with open(os.path.join(legacy_dir, "config.json"), encoding="utf-8") as f:
        new_form = json.load(f)
    if "rope_parameters" not in new_form:
        problem("llama config.json has no rope_parameters: this transformers writes the old form")
    else:
        write_json(os.path.join(legacy_dir, "config.json"), legacy_config(new_form))
    with open(os.path.join(legacy_dir, "config.json"), encoding="utf-8") as f:
        print(f"llama-legacy-config config.json: {f.read()}", flush=True)
    legacy_cfg = transformers.AutoConfig.from_pretrained(legacy_dir)
    entry, _ = reference("llama-legacy-config", legacy_dir, load_hf_tokenizer("llama-legacy-config", legacy_dir),
                         Tokenizer.from_file(os.path.join(legacy_dir, "tokenizer.json")), text, legacy_cfg, device)
    base = expected["checkpoints"]["llama"]
    if entry["nll"] != base["nll"] or entry["rope_inv_freq"] != base["rope_inv_freq"]:
        problem(f"legacy llama config reads differently: nll {entry['nll']} vs {base['nll']}")
    expected["checkpoints"]["llama-legacy-config"] = entry


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="text the tokenizers are trained on")
    ap.add_argument("--eval", required=True, help="evaluation text (test/fixtures/tiny/eval.txt)")
    ap.add_argument("--out", required=True, help="folder to write the checkpoints and expected.json into")
    ap.add_argument("--tar", help="also pack --out into this .tar.gz")
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, "
          f"device {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}", flush=True)

    with open(args.corpus, encoding="utf-8") as f:
        corpus_lines = f.read().splitlines(keepends=True)
    with open(args.eval, encoding="utf-8") as f:
        text = f.read()
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)

    toks = {style: train_tokenizer(style, corpus_lines) for style in TOKENIZER_STYLES}
    expected = {
        "generator": {
            "script": "training/make_reference_checkpoints.py", "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "precision": "float32, eager attention, TF32 off", "seed": SEED,
        },
        "eval_text": "eval.txt",
        "ctx": CTX,
        "checkpoints": {},
    }
    built = {}
    for index, (name, (cls, make_config, style, dtype)) in enumerate(checkpoint_specs().items()):
        try:
            build_checkpoint(name, index, cls, make_config, toks[style], style, dtype, built, expected, args.out, text, device)
        except Exception:  # noqa: BLE001 - the other checkpoints still get made
            problem(f"{name}: failed:\n{traceback.format_exc()}")
    try:
        build_legacy(expected, args.out, text, device)
    except Exception:  # noqa: BLE001
        problem(f"llama-legacy-config: failed:\n{traceback.format_exc()}")
    base = expected["checkpoints"].get("llama", {})
    llama_inv = base.get("rope_inv_freq")
    plain = [1.0 / (500000.0 ** (2 * i / 16)) for i in range(8)]
    if llama_inv is None or all(abs(a - b) <= 1e-5 * b for a, b in zip(llama_inv, plain)):
        problem("llama3 rope scaling did not change the inverse frequencies")

    expected["problems"] = PROBLEMS
    write_json(os.path.join(args.out, "expected.json"), expected)
    if args.tar:
        with tarfile.open(args.tar, "w:gz") as t:
            t.add(args.out, arcname="tiny")
    for root, _, files in os.walk(args.out):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            print(f"{os.path.getsize(p):>9}  {os.path.relpath(p, args.out)}")
    if PROBLEMS:
        print(f"{len(PROBLEMS)} problem(s):\n  " + "\n  ".join(PROBLEMS))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
