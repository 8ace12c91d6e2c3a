"""Block-scaled FP8 copy of a BF16/F32 checkpoint, laid out as DeepSeek-V3/R1/V3.1 and Kimi-K2 ship theirs, streamed
one shard at a time: the real-size counterpart of scripts/make-fp8-fixture.py (same quantizer), for checking and
timing the FP8 loader at published dimensions (e.g. on make_random_like.py output).

usage: /tmp/gguf-venv/bin/python scripts/fp8-quantize.py IN_DIR OUT_DIR [--block 128,128] [--ue8m0]
"""
import argparse
import importlib.util
import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("fixture", os.path.join(HERE, "make-fp8-fixture.py"))
fixture = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixture)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--block", default="128,128")
    ap.add_argument("--ue8m0", action="store_true")
    a = ap.parse_args()
    block = [int(x) for x in a.block.split(",")]
    os.makedirs(a.out, exist_ok=True)
    index = json.load(open(os.path.join(a.src, "model.safetensors.index.json")))
    weight_map: dict[str, str] = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors = load_file(os.path.join(a.src, shard))
        out: dict[str, torch.Tensor] = {}
        for name, t in tensors.items():
            if fixture.is_fp8(name, t):
                q, s = fixture.quantize(t.float(), block, a.ue8m0)
                out[name], out[name + "_scale_inv"] = q, s
            else:
                out[name] = t
        save_file(out, os.path.join(a.out, shard), metadata={"format": "pt"})
        weight_map.update({k: shard for k in out})
        print(f"{shard}: {len(out)} tensors", flush=True)
    json.dump({"metadata": {}, "weight_map": weight_map}, open(os.path.join(a.out, "model.safetensors.index.json"), "w"))
    cfg = json.load(open(os.path.join(a.src, "config.json")))
    cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": block}
    if a.ue8m0:
        cfg["quantization_config"]["scale_fmt"] = "ue8m0"
    json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
    for f in os.listdir(a.src):
        if f.startswith("tokenizer") and not os.path.exists(os.path.join(a.out, f)):
            shutil.copy(os.path.join(a.src, f), a.out)


if __name__ == "__main__":
    main()
