"""Block-scaled FP8 versions of test/fixtures/tiny-deepseek-v3, laid out as DeepSeek-V3/R1/V3.1 and Kimi-K2 ship
them, with float64 reference logits from transformers.

usage: /tmp/gguf-venv/bin/python scripts/make-fp8-fixture.py   (torch >= 2.7 for float8_e8m0fnu, transformers)

Writes two folders under test/fixtures/:
- tiny-deepseek-v3-fp8: weight_block_size [16, 24], scales F32 (amax / 448, as DeepSeek-V3 and R1), one file;
- tiny-deepseek-v3-fp8-ue8m0: weight_block_size [32, 48], scale_fmt ue8m0, scales powers of two stored as
  F8_E8M0 (as transformers' FP8 quantizer and V4-style files store them), split over two shards with an index so
  every scale lives in another file than its weight.
Blocks of both sizes leave ragged edge blocks on the fixture's matrices (40 x 64, 96 x 32, ...).

Each Linear weight (attention incl. kv_a_proj_with_mqa, dense MLP, shared and routed experts) is quantized the way
DeepSeek's FP8 cast is undone by weight_dequant (inference/kernel.py): per block scale s = amax / 448 (rounded up to
a power of two for ue8m0), q = float8_e4m3fn(w / s) (torch's round-to-nearest-even), stored with
`<name>_scale_inv` = s, so that w ~ q * s. Embeddings, norms, the router gate and lm_head are BF16 and
e_score_correction_bias F32, as in the releases.

The reference is the model DeepSeek's fp8_cast_bf16.py makes of the release: every weight q * s computed in F32 and
rounded to BF16 (weight_dequant writes BF16), run by transformers' DeepseekV3ForCausalLM in float64. mla-ts
dequantizes to the same BF16 values, so its logits should match to F32 arithmetic. reference.json also records how
far logits move when the dequantized weights are kept in F32 instead (the BF16 rounding's own effect), and the
reference holds torch's tables of all 256 float8_e4m3fn and float8_e8m0fnu values.
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "test", "fixtures", "tiny-deepseek-v3")
FP8_MAX = 448.0

VARIANTS = [
    {"name": "tiny-deepseek-v3-fp8", "block": [16, 24], "ue8m0": False, "shards": 1},
    {"name": "tiny-deepseek-v3-fp8-ue8m0", "block": [32, 48], "ue8m0": True, "shards": 2},
]


def is_fp8(name: str, t: torch.Tensor) -> bool:
    """The Linear weights DeepSeek-V3 stores in FP8: every matrix but the embeddings, lm_head and the router gate."""
    keep = ("model.embed_tokens.weight", "lm_head.weight")
    return t.ndim == 2 and name not in keep and not name.endswith(".mlp.gate.weight")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def block_scales(w: torch.Tensor, block: list[int], ue8m0: bool) -> torch.Tensor:
    """One scale per block (ragged edge blocks included): amax / 448, or the power of two at or above it."""
    bm, bn = block
    rows, cols = w.shape
    s = torch.empty(ceil_div(rows, bm), ceil_div(cols, bn), dtype=torch.float32)
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            amax = w[i * bm:(i + 1) * bm, j * bn:(j + 1) * bn].abs().max().item()
            s[i, j] = amax / FP8_MAX if amax > 0 else 1.0
    if ue8m0:
        s = torch.pow(2.0, torch.ceil(torch.log2(s)))
    return s


def expand(s: torch.Tensor, shape: torch.Size, block: list[int]) -> torch.Tensor:
    """Each block's scale repeated over its elements (cropped at the ragged edges)."""
    bm, bn = block
    return s.repeat_interleave(bm, 0).repeat_interleave(bn, 1)[: shape[0], : shape[1]]


def quantize(w: torch.Tensor, block: list[int], ue8m0: bool) -> tuple[torch.Tensor, torch.Tensor]:
    s = block_scales(w, block, ue8m0)
    q = (w / expand(s, w.shape, block)).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q, s


def dequantize(q: torch.Tensor, s: torch.Tensor, block: list[int]) -> torch.Tensor:
    """weight_dequant's product, in F32 (the caller rounds it to BF16 as weight_dequant's BF16 output does)."""
    return q.to(torch.float32) * expand(s, q.shape, block)


def fuse_experts(cfg: DeepseekV3Config, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The hub layout (one tensor per expert) as transformers 5 holds it: gate_up_proj [E, 2I, D], down_proj [E, D, I]."""
    out = {k: v for k, v in weights.items() if ".mlp.experts." not in k}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}.mlp.experts."
        if f"{p}0.gate_proj.weight" not in weights:
            continue
        e = range(cfg.n_routed_experts)
        out[f"{p}gate_up_proj"] = torch.stack([torch.cat([weights[f"{p}{j}.gate_proj.weight"], weights[f"{p}{j}.up_proj.weight"]]) for j in e])
        out[f"{p}down_proj"] = torch.stack([weights[f"{p}{j}.down_proj.weight"] for j in e])
    return out


def reference_logits(cfg: DeepseekV3Config, weights: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    model = DeepseekV3ForCausalLM(cfg).double().eval()
    fused = fuse_experts(cfg, weights)
    missing, unexpected = model.load_state_dict({k: v.double() for k, v in fused.items()}, strict=False)
    # the MTP layer (num_nextn_predict_layers) is not part of the model transformers builds
    if missing or [k for k in unexpected if not k.startswith(f"model.layers.{cfg.num_hidden_layers}.")]:
        raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        return model(ids).logits


def write_variant(v: dict, base: dict[str, torch.Tensor], config: dict, ids: torch.Tensor) -> None:
    torch.manual_seed(0)  # the model's own init is overwritten by the state dict; seeded anyway
    out = os.path.join(ROOT, "test", "fixtures", v["name"])
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    block, ue8m0 = v["block"], v["ue8m0"]
    stored, scales, deq_bf16, deq_f32 = {}, {}, {}, {}
    for name, w in base.items():
        if is_fp8(name, w):
            q, s = quantize(w, block, ue8m0)
            stored[name] = q
            scales[f"{name}_scale_inv"] = s.to(torch.float8_e8m0fnu) if ue8m0 else s
            d = dequantize(q, s, block)
            deq_f32[name], deq_bf16[name] = d, d.to(torch.bfloat16)
        else:
            keep = torch.float32 if name.endswith("e_score_correction_bias") else torch.bfloat16
            stored[name] = w.to(keep)
            deq_f32[name] = deq_bf16[name] = stored[name]
    if v["shards"] == 1:
        save_file({**stored, **scales}, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    else:
        files = {"model-00001-of-00002.safetensors": stored, "model-00002-of-00002.safetensors": scales}
        weight_map = {}
        for f, tensors in files.items():
            save_file(tensors, os.path.join(out, f), metadata={"format": "pt"})
            weight_map.update({k: f for k in tensors})
        total = sum(t.numel() * t.element_size() for t in {**stored, **scales}.values())
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as fh:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, fh)

    qc = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": block}
    if ue8m0:
        qc["scale_fmt"] = "ue8m0"
    cfg_json = {**config, "quantization_config": qc}
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump(cfg_json, fh, indent=2)

    cfg = DeepseekV3Config.from_pretrained(SRC)
    cfg._attn_implementation = "eager"
    cfg._experts_implementation = "eager"  # the grouped-mm kernel has no float64
    logits = reference_logits(cfg, deq_bf16, ids)
    logits_f32w = reference_logits(cfg, deq_f32, ids)
    rel = ((logits_f32w - logits).norm() / logits.norm()).item()
    ref = {"logits": logits.float().contiguous()}
    if not ue8m0:
        ref["table.e4m3"] = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
        ref["table.e8m0"] = torch.arange(256, dtype=torch.uint8).view(torch.float8_e8m0fnu).float()
    save_file(ref, os.path.join(out, "reference.safetensors"))
    meta = {
        "source": f"transformers {__import__('transformers').__version__} DeepseekV3ForCausalLM, eager, float64, on the "
                  "FP8 weights dequantized to BF16 (scripts/make-fp8-fixture.py)",
        "input_ids": ids.tolist(),
        "weight_block_size": block,
        "scale_storage": "F8_E8M0" if ue8m0 else "F32",
        "logits_rel_diff_f32_dequant": rel,
        "logits_rel_diff_f32_dequant_note": "||logits(weights q*s kept in F32) - logits(BF16)|| / ||logits(BF16)||",
    }
    with open(os.path.join(out, "reference.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    for f in os.listdir(out):
        os.chmod(os.path.join(out, f), 0o644)  # save_file creates 0600
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"wrote {out} ({size} bytes; BF16 vs F32 dequant moves logits by {rel:.2e})", file=sys.stderr)


def main() -> None:
    with open(os.path.join(SRC, "config.json")) as fh:
        config = json.load(fh)
    with open(os.path.join(SRC, "reference.json")) as fh:
        ids = torch.tensor(json.load(fh)["input_ids"])
    base = load_file(os.path.join(SRC, "model.safetensors"))
    for v in VARIANTS:
        write_variant(v, base, config, ids)


if __name__ == "__main__":
    main()
