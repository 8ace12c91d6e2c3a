"""Tiny checkpoints of the MLA families added beside deepseek_v2/v3, each made by transformers in float64 with
reference logits and hidden states, laid out as test/fixtures/tiny-deepseek-v2-groups (config.json,
model.safetensors in F32, reference.json, reference.safetensors):

- tiny-glm4-moe-lite: Glm4MoeLiteForCausalLM (GLM-4.7-Flash's layout): q_lora, qk_nope wider than v, sigmoid router
  with e_score_correction_bias, a dense layer 0 then MoE layers from the default mlp_layer_types. As in the release,
  config.json carries first_k_dense_replace 1 and no mlp_layer_types, and the checkpoint holds the
  multi-token-prediction layer (num_nextn_predict_layers 1) as layer num_hidden_layers: a whole decoder layer plus
  eh_proj, enorm, hnorm and shared_head.norm, random, which the engine must skip (the reference is the model
  without it, as transformers loads GLM-4.7-Flash).
- tiny-youtu: YoutuForCausalLM (Youtu-LLM-2B's layout): DeepSeek-V3 attention with q_lora, dense MLPs, tied
  embeddings, rope_interleave.
- tiny-minicpm3: MiniCPM3ForCausalLM (MiniCPM3-4B's layout): q_lora, RoPE by halves, scale_emb / scale_depth /
  dim_model_base, tied embeddings, LongRoPE whose long_factor differs from short_factor while
  max_position_embeddings equals original_max_position_embeddings (transformers never switches to long_factor), as
  MiniCPM3-4B's config. Its config.json leaves out v_head_dim and rope "factor", as MiniCPM3-4B's does; the model is
  built with factor 1.0 because transformers 5.18's MiniCPM3 attention reads rope_parameters["factor"]
  unconditionally (a KeyError on MiniCPM3-4B's own config), and 1.0 is the default it would compute
  (max_position_embeddings / original_max_position_embeddings).
- tiny-kimi-k2: Kimi-K2's layout (one expert group, 1 shared expert, first_k_dense_replace 1, YaRN with beta_fast =
  beta_slow = 1, routed_scaling_factor 2.827). transformers has no kimi_k2 model: the Kimi-K2 repositories ship
  DeepSeek-V3's modeling_deepseek.py as remote code (architectures DeepseekV3ForCausalLM), which transformers'
  deepseek_v3 reproduces, so the model is DeepseekV3ForCausalLM and config.json is written with model_type kimi_k2,
  as the release's is.

usage: /tmp/gguf-venv/bin/python scripts/make-family-fixtures.py   (transformers 5.18 + torch)
"""
import json
import os
import sys
import tempfile

import torch
import transformers
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "test", "fixtures")
COMMON = dict(
    vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=4, max_position_embeddings=512, bos_token_id=1, eos_token_id=2, initializer_range=0.1,
)


def build(cls, cfg_cls, seed: int, **kw):
    torch.manual_seed(seed)
    cfg = cfg_cls(**{**COMMON, **kw})
    cfg._experts_implementation = "eager"  # the grouped-mm kernel has no float64
    cfg._attn_implementation = "eager"
    model = cls(cfg).double().eval()
    # a non-zero e_score_correction_bias, so that the choice really adds it
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buf.copy_(torch.randn_like(buf) * 0.05)
    return model


def write(name: str, model, fix_config=None, extra_tensors=None) -> None:
    out = os.path.join(FIXTURES, name)
    os.makedirs(out, exist_ok=True)
    ids = torch.randint(3, 512, (2, 24), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        res = model(ids, output_hidden_states=True)
        prompt = ids[0, :8].tolist()
        gen = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0)
    with tempfile.TemporaryDirectory() as tmp:
        # save_pretrained writes the hub layout (one tensor per expert), as the released checkpoints have it
        model.float().save_pretrained(tmp)
        tensors = load_file(os.path.join(tmp, "model.safetensors"))
        with open(os.path.join(tmp, "config.json")) as f:
            config = json.load(f)
    tensors.update(extra_tensors or {})
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    if fix_config:
        fix_config(config)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    ref = {f"hidden_states.{i}": h.float().contiguous() for i, h in enumerate(res.hidden_states)}
    ref["logits"] = res.logits.float().contiguous()
    save_file(ref, os.path.join(out, "reference.safetensors"))
    meta = {
        "source": f"transformers {transformers.__version__} {type(model).__name__}, eager attention, float64 (scripts/make-family-fixtures.py)",
        "input_ids": ids.tolist(),
        "hidden_states_note": "hidden_states.0 is the embedding output; hidden_states.i the output of layer i as returned by output_hidden_states",
        "num_hidden_states": len(res.hidden_states),
        "generate": {"prompt": prompt, "greedy_tokens": gen[0, len(prompt):].tolist()},
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(meta, f)
    print(f"wrote {out}: {len(tensors)} tensors", file=sys.stderr)


def glm() -> None:
    kw = dict(
        moe_intermediate_size=16, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, n_group=1,
        topk_group=1, routed_scaling_factor=1.8, norm_topk_prob=True, q_lora_rank=24, kv_lora_rank=32,
        qk_nope_head_dim=24, qk_rope_head_dim=8, v_head_dim=32, rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, rope_interleave=True,
    )
    model = build(transformers.Glm4MoeLiteForCausalLM, transformers.Glm4MoeLiteConfig, 21, **kw)
    # the MTP layer: a fourth decoder layer (MoE, as GLM's) and the MTP module's own tensors, under layer index 3
    mtp = build(transformers.Glm4MoeLiteForCausalLM, transformers.Glm4MoeLiteConfig, 22, **{**kw, "num_hidden_layers": 4})
    with tempfile.TemporaryDirectory() as tmp:
        mtp.float().save_pretrained(tmp)
        extra = {k: v for k, v in load_file(os.path.join(tmp, "model.safetensors")).items() if k.startswith("model.layers.3.")}
    D = COMMON["hidden_size"]
    g = torch.Generator().manual_seed(23)
    extra.update({
        "model.layers.3.eh_proj.weight": torch.randn(D, 2 * D, generator=g) * 0.1,
        "model.layers.3.enorm.weight": torch.ones(D),
        "model.layers.3.hnorm.weight": torch.ones(D),
        "model.layers.3.shared_head.norm.weight": torch.ones(D),
    })

    def fix(c):
        assert c["mlp_layer_types"] == ["dense", "sparse", "sparse"], c["mlp_layer_types"]
        del c["mlp_layer_types"]  # as GLM-4.7-Flash's config: the default list, and first_k_dense_replace 1
        c.update(first_k_dense_replace=1, num_nextn_predict_layers=1, topk_method="noaux_tc", partial_rotary_factor=1.0)
    write("tiny-glm4-moe-lite", model, fix, extra)


def youtu() -> None:
    model = build(
        transformers.YoutuForCausalLM, transformers.YoutuConfig, 31,
        q_lora_rank=24, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=24, rms_norm_eps=1e-6,
        tie_word_embeddings=True, rope_interleave=True, rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
    )
    write("tiny-youtu", model)


def minicpm3() -> None:
    short = [1.0, 1.3, 2.1, 3.7]
    long = [1.1, 1.9, 4.0, 8.5]
    model = build(
        transformers.MiniCPM3ForCausalLM, transformers.MiniCPM3Config, 41,
        q_lora_rank=24, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, rms_norm_eps=1e-5,
        tie_word_embeddings=True, scale_emb=12, scale_depth=1.4, dim_model_base=16,
        rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": short, "long_factor": long,
                         "original_max_position_embeddings": 512, "factor": 1.0},
    )
    assert model.config.v_head_dim == 16

    def fix(c):
        del c["v_head_dim"]  # MiniCPM3-4B's config leaves it out: hidden_size / num_attention_heads
        del c["rope_parameters"]["factor"]
    write("tiny-minicpm3", model, fix)


def kimi() -> None:
    model = build(
        transformers.DeepseekV3ForCausalLM, transformers.DeepseekV3Config, 51,
        moe_intermediate_size=16, n_routed_experts=12, n_shared_experts=1, num_experts_per_tok=3, n_group=1,
        topk_group=1, first_k_dense_replace=1, routed_scaling_factor=2.827, norm_topk_prob=True, q_lora_rank=24,
        kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, rms_norm_eps=1e-6,
        tie_word_embeddings=False, num_mtp_layers=0, rope_interleave=True,
        rope_parameters={"rope_type": "yarn", "rope_theta": 50000.0, "factor": 32.0, "original_max_position_embeddings": 16,
                         "beta_fast": 1.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0},
    )

    def fix(c):
        c.update(model_type="kimi_k2", architectures=["DeepseekV3ForCausalLM"], scoring_func="sigmoid", topk_method="noaux_tc",
                 num_nextn_predict_layers=0, moe_layer_freq=1)
    write("tiny-kimi-k2", model, fix)


def main() -> None:
    which = sys.argv[1:] or ["glm", "youtu", "minicpm3", "kimi"]
    for name in which:
        {"glm": glm, "youtu": youtu, "minicpm3": minicpm3, "kimi": kimi}[name]()


if __name__ == "__main__":
    main()
