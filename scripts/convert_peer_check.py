"""Load a converted checkpoint with the PyTorch peer (../shared/peers/torch/mla_ref.py, which agrees with Hugging Face
transformers' deepseek_v3) and compare its float64 logits, naive and absorbed, with the engine's (`mla logits`).

    python3 scripts/convert_peer_check.py DST [SRC]    # SRC: also compare with the source model's engine logits

The peer implements default and YaRN RoPE only. For a `--rope-key grouped` conversion (a longrope table) this script
gives it transformers' longrope frequencies, 1 / (f_i base^(2i/dim)) with the config's attention_factor, and says so.
"""
import json, os, subprocess, sys
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "..", "shared", "peers", "torch"))
import mla_ref  # noqa: E402
from mla_ref import Model  # noqa: E402

_peer_inv_freq = mla_ref.inv_freq_and_factor


def inv_freq_with_longrope(cfg, dim):
    rp = mla_ref.rope_params(cfg)
    if rp["rope_type"] != "longrope":
        return _peer_inv_freq(cfg, dim)
    f = torch.tensor(rp["short_factor"], dtype=torch.float64)
    assert rp["short_factor"] == rp["long_factor"], "longrope with different short/long factors"
    base = torch.tensor(float(rp["rope_theta"]), dtype=torch.float64)
    inv = 1.0 / (f * base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    return inv, float(rp.get("attention_factor", 1.0))

IDS = [0, 464, 1306, 285, 17, 912, 3, 77, 1500, 20, 640, 9, 1003, 58, 2000, 1]


def engine_logits(d, ids):
    out = subprocess.run(["node", "--import", "tsx", os.path.join(ROOT, "src/cli/main.ts"), "logits", "--model", d,
                          "--ids", ",".join(map(str, ids)), "--backend", "cpu-scalar", "--json"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return torch.tensor(json.loads(out)["logits"], dtype=torch.float64)


def main():
    dst = sys.argv[1]
    vocab = json.load(open(os.path.join(dst, "config.json")))["vocab_size"]
    ids = [i % vocab for i in IDS]
    if mla_ref.rope_params(json.load(open(os.path.join(dst, "config.json"))))["rope_type"] == "longrope":
        print("longrope config: the peer runs with transformers' longrope frequencies (it implements default and YaRN only)")
        mla_ref.inv_freq_and_factor = inv_freq_with_longrope
    m = Model(dst, torch.float64)
    refs = [("engine, converted", engine_logits(dst, ids))]
    if len(sys.argv) > 2:
        refs.append(("engine, source", engine_logits(sys.argv[2], ids)))
    for mode in ("naive", "absorb"):
        lg = m.logits(ids, mode)
        for name, ref in refs:
            print(f"peer {mode} vs {name}: relative error {((lg - ref).norm() / ref.norm()).item():.2e}")


if __name__ == "__main__":
    main()
