"""A tiny DeepSeek-V2 with expert groups (group_limited_greedy: the best expert of each group scores it), made by
transformers with float64 reference logits: the case where llama.cpp's deepseek2 routes by V3's rule (sum of the top
2 per group) and mla-ts must follow transformers.

usage: /tmp/gguf-venv/bin/python scripts/make-v2-groups-fixture.py   (transformers + torch; writes
test/fixtures/tiny-deepseek-v2-groups/, laid out as the other tiny fixtures: config.json, model.safetensors (F32),
reference.json, reference.safetensors with logits and hidden states of two sequences in float64 cast to f32)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import DeepseekV2Config, DeepseekV2ForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "tiny-deepseek-v2-groups")


def main() -> None:
    torch.manual_seed(7)
    cfg = DeepseekV2Config(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=512, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False, first_k_dense_replace=1, kv_lora_rank=32, q_lora_rank=None,
        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, head_dim=8,
        n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=3, moe_intermediate_size=16,
        n_group=4, topk_group=2, topk_method="group_limited_greedy", norm_topk_prob=False, routed_scaling_factor=1.0,
        initializer_range=0.1,
    )
    cfg.architectures = ["DeepseekV2ForCausalLM"]
    cfg._experts_implementation = "eager"  # the grouped-mm kernel has no float64
    cfg._attn_implementation = "eager"
    model = DeepseekV2ForCausalLM(cfg).double().eval()
    # the router as initialised: a peaked softmax (gate weights scaled up) leaves a group's second expert near 0, so
    # llama.cpp's top-2 sum ranks groups as the max does and the two rules would agree on every token
    ids = torch.randint(3, 512, (2, 24), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
        prompt = ids[0, :8].tolist()
        gen = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0)
    os.makedirs(OUT, exist_ok=True)
    # save_pretrained writes the hub layout (one tensor per expert), as the released checkpoints have it
    model.float().save_pretrained(OUT)
    ref = {f"hidden_states.{i}": h.float().contiguous() for i, h in enumerate(out.hidden_states)}
    ref["logits"] = out.logits.float().contiguous()
    save_file(ref, os.path.join(OUT, "reference.safetensors"))
    meta = {
        "source": f"transformers {__import__('transformers').__version__} DeepseekV2ForCausalLM, float64 (scripts/make-v2-groups-fixture.py)",
        "input_ids": ids.tolist(),
        "hidden_states_note": "hidden_states.0 is the embedding output; hidden_states.i the output of layer i as returned by output_hidden_states",
        "num_hidden_states": len(out.hidden_states),
        "generate": {"prompt": prompt, "greedy_tokens": gen[0, len(prompt):].tolist()},
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(meta, f)
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
