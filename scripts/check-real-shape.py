"""Logits of a real-shape random checkpoint (make_random_like.py output) from transformers, in float32, next to
mla-ts's: the check that a family loads at its published dimensions, not only at fixture size.

usage: /tmp/gguf-venv/bin/python scripts/check-real-shape.py MODEL_DIR IDS_JSON_OUT [--ids 1,2,3] [--mla-json F]
Writes {"ids", "logits"} (all positions, float32) to IDS_JSON_OUT; with --mla-json (the output of
`mla logits --json`), prints the relative error ||mla - ref|| / ||ref|| and whether the argmaxes agree.
"""
import argparse
import json
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--ids", default="1,17,400,9000,23,77,5000,12,3,64000,8,150000")
    ap.add_argument("--mla-json")
    a = ap.parse_args()
    ids = [int(x) for x in a.ids.split(",")]
    if a.mla_json:
        ref = torch.tensor(json.load(open(a.out))["logits"])
        got = torch.tensor(json.load(open(a.mla_json))["logits"])
        err = ((got - ref).norm() / ref.norm()).item()
        same = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
        print(f"logits rel err {err:.3e}; argmax agrees at {same * 100:.0f}% of {ref.shape[0]} positions")
        return
    torch.set_num_threads(2)
    cfg = AutoConfig.from_pretrained(a.model)
    cfg._experts_implementation = "eager"
    cfg._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_pretrained(a.model, config=cfg, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    json.dump({"ids": ids, "logits": logits.tolist()}, open(a.out, "w"))
    print(f"wrote {a.out}: {tuple(logits.shape)}", file=sys.stderr)


if __name__ == "__main__":
    main()
