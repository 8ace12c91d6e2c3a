#!/usr/bin/env python3
"""
Float64 reference logits for a llama / qwen2 / mistral checkpoint folder, written as transformers'
modeling_llama.py, modeling_qwen2.py and modeling_mistral.py compute them (rotate_half RoPE on the whole head,
repeat_kv, RMSNorm, causal mask plus Mistral's sliding window), but with no transformers import: safetensors is
parsed by hand (8-byte little-endian header length, JSON header, raw data).

    /usr/bin/python3 scripts/llama_ref.py test/fixtures/tiny-llama [more folders...]

Writes reference.json into each folder: input_ids [B, T], logits [B, T, V] of the whole sequence, and greedy
tokens continuing a prompt (full recompute per token, argmax).
"""
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

NP_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}


def read_safetensors(path):
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[base + a : base + b]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=NP_DTYPES[info["dtype"]])
        out[name] = torch.from_numpy(arr.astype(np.float64).reshape(info["shape"]))
    return out


def rope_parameters(cfg):
    """transformers>=5 rope_parameters, or rope_theta + rope_scaling (hub spelling)."""
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    theta = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    return kind, theta, params


def inv_freq(cfg, dim):
    """_compute_default / _linear_scaling / _llama3 _rope_parameters of transformers' modeling_rope_utils."""
    kind, theta, p = rope_parameters(cfg)
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float64) / dim))
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / p["factor"]
    if kind == "llama3":
        factor, lo, hi = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
        old = p["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        return torch.where(medium, smoothed, inv_l)
    raise SystemExit(f"rope type {kind} not implemented in the reference")


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def repeat_kv(x, n_rep):
    b, kv, t, d = x.shape
    return x if n_rep == 1 else x[:, :, None, :, :].expand(b, kv, n_rep, t, d).reshape(b, kv * n_rep, t, d)


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def linear(x, w, name):
    b = w.get(name + ".bias")
    y = x @ w[name + ".weight"].T
    return y if b is None else y + b


def sliding_window(cfg):
    kind = cfg["model_type"]
    if kind == "mistral":
        return cfg.get("sliding_window", 4096)
    if kind == "qwen2" and cfg.get("use_sliding_window"):
        return cfg.get("sliding_window", 4096)
    return None


def attention_mask(cfg, t):
    i = torch.arange(t)[:, None]
    j = torch.arange(t)[None, :]
    keep = j <= i
    w = sliding_window(cfg)
    if w is not None:
        keep = keep & (j > i - w)  # masking_utils.sliding_window_overlay
    return torch.where(keep, 0.0, float("-inf"))


def attention(cfg, w, p, x, cos, sin, mask):
    B, T, _ = x.shape
    H, KV = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = cfg.get("head_dim") or cfg["hidden_size"] // H
    q = linear(x, w, p + "q_proj").view(B, T, H, hd).transpose(1, 2)
    k = linear(x, w, p + "k_proj").view(B, T, KV, hd).transpose(1, 2)
    v = linear(x, w, p + "v_proj").view(B, T, KV, hd).transpose(1, 2)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    k, v = repeat_kv(k, H // KV), repeat_kv(v, H // KV)
    scores = (q @ k.transpose(2, 3)) * hd**-0.5 + mask
    o = torch.softmax(scores, dim=-1) @ v
    return linear(o.transpose(1, 2).reshape(B, T, H * hd), w, p + "o_proj")


def mlp(w, p, x):
    gate = linear(x, w, p + "gate_proj")
    return linear(torch.nn.functional.silu(gate) * linear(x, w, p + "up_proj"), w, p + "down_proj")


def forward(cfg, w, ids):
    """Logits [B, T, V] of a batch of equal-length sequences from position 0."""
    T = ids.shape[1]
    H = cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // H
    freqs = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq(cfg, hd)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = attention_mask(cfg, T)
    eps = cfg.get("rms_norm_eps", 1e-6)
    h = w["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = h + attention(cfg, w, p + "self_attn.", rms_norm(h, w[p + "input_layernorm.weight"], eps), cos, sin, mask)
        h = h + mlp(w, p + "mlp.", rms_norm(h, w[p + "post_attention_layernorm.weight"], eps))
    h = rms_norm(h, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return h @ head.T


def greedy(cfg, w, prompt, n):
    ids = list(prompt)
    for _ in range(n):
        logits = forward(cfg, w, torch.tensor([ids]))
        ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt) :]


def short(x):
    return float(f"{x:.10g}")


def main(dirs):
    for d in map(Path, dirs):
        cfg = json.loads((d / "config.json").read_text())
        w = read_safetensors(d / "model.safetensors")
        V = cfg["vocab_size"]
        ids = np.random.RandomState(0).randint(0, V, size=(2, 10))
        logits = forward(cfg, w, torch.from_numpy(ids))
        prompt = [int(t) for t in ids[0, :5]]
        ref = {
            "source": "scripts/llama_ref.py (float64 PyTorch, transformers' llama/qwen2/mistral computation)",
            "torch": torch.__version__,
            "input_ids": ids.tolist(),
            "logits": [[[short(x) for x in row] for row in seq] for seq in logits.tolist()],
            "generate": {"prompt": prompt, "greedy_tokens": greedy(cfg, w, prompt, 8)},
        }
        (d / "reference.json").write_text(json.dumps(ref, separators=(",", ":")) + "\n")
        print(f"{d}: logits {list(logits.shape)}, greedy {ref['generate']['greedy_tokens']}")


if __name__ == "__main__":
    main(sys.argv[1:])
