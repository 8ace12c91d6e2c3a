#!/usr/bin/env python3
"""
GGUF files of the test fixtures, made with llama.cpp's own converter (test/gguf-load.test.ts reads them).

    python3 -m venv /tmp/gguf-venv --system-site-packages
    /tmp/gguf-venv/bin/pip install torch transformers numpy sentencepiece safetensors tokenizers
    PYTHONPATH=.cache/llama.cpp:.cache/llama.cpp/gguf-py /tmp/gguf-venv/bin/python scripts/make-gguf-fixtures.py [--all]

What the converter needs that the fixtures do not have, and what this script changes in its call (said here, so a
reader knows which facts come from llama.cpp and which from us):
- A tokenizer. The DeepSeek fixtures (vocab 512) get test/fixtures/tokenizer-bpe512.json; the llama-family fixtures
  (vocab 64..120) a byte-level BPE trained here on a few sentences, small enough for their vocabularies (written
  next to the GGUF as <name>.tokenizer.json so the test compares against it). Both get a tokenizer_config.json with
  bos/eos and a chat template.
- The pre-tokenizer check: the converter recognises a BPE pre-tokenizer by the hash of one encoding and refuses
  unknown ones. These tokenizers pre-tokenize as GPT-2 does (ByteLevel with its regex), so get_vocab_base_pre is
  patched to answer "gpt-2".
- config.json: `architectures` (the fixtures have null; the converter picks its class by it), and for DeepSeek-V3
  fixtures `scoring_func: sigmoid` and `topk_method: noaux_tc`, as DeepSeek-V3's own config.json has them (the
  fixtures, saved by transformers, dropped them; without scoring_func the converter writes no expert_gating_func).
- mistral: LlamaModel writes no sliding window; the mistral fixture's is added as llama.attention.sliding_window
  (the key llama.cpp defines), or the file would be another model.
- The older deepseek2 layout (one attn_kv_b, key_length = qk_nope + qk_rope, no *_length_mla keys), which the
  converter wrote before it split kv_b_proj: modify_tensors is patched to keep kv_b_proj whole and the keys are
  rewritten with gguf-py's writer.
- A K-quant file: the converter writes F32/F16/BF16/Q8_0 only and gguf-py cannot quantize to K types, so
  mixed-quant.gguf is written with gguf-py directly: a tiny llama-arch model (hidden 256) whose matrices are random
  but valid Q4_0/Q4_K/Q5_K/Q6_K/Q8_0 blocks (the test compares it with its own dequantized copy).

Committed (test/fixtures/gguf/, about 6 MB): tiny-deepseek-v3 (F32, current attn_k_b/attn_v_b layout),
tiny-mla-dense-kvb (F32, older attn_kv_b layout), tiny-llama, tiny-qwen2, tiny-mistral (F32), tiny-mistral-q8_0,
mixed-quant; with --all (run it: the tests need them) also tiny-deepseek-v2-lite (F32 both layouts),
tiny-deepseek-v3 (older layout, Q8_0) and tiny-mla-dense (current layout).
"""
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LLAMA_CPP = ROOT / ".cache" / "llama.cpp"
sys.path[:0] = [str(LLAMA_CPP), str(LLAMA_CPP / "gguf-py")]

import gguf  # noqa: E402
import convert_hf_to_gguf  # noqa: E402
from conversion import base as conv_base  # noqa: E402
from conversion import deepseek as conv_deepseek  # noqa: E402
from conversion import llama as conv_llama  # noqa: E402

FIXTURES = ROOT / "test" / "fixtures"
OUT = FIXTURES / "gguf"
EXTRA = OUT

ARCHITECTURES = {
    "deepseek_v2": "DeepseekV2ForCausalLM",
    "deepseek_v3": "DeepseekV3ForCausalLM",
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "mistral": "MistralForCausalLM",
}

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SIMPLE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}\n\n"
    "{% else %}Assistant: {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

TRAIN_TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "hello world, this is a tiny tokenizer for tests.",
    "attention is all you need! 1234567890",
    "multi head latent attention compresses the keys and values",
    "The Quick Brown Fox Jumps Over The Lazy Dog?",
]


def small_tokenizer(vocab_size: int, specials: list[str], upper: bool) -> dict:
    """A byte-level BPE (GPT-2's pre-tokenizer) with at most vocab_size tokens, trained on TRAIN_TEXT."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    text = [t if upper else t.lower() for t in TRAIN_TEXT]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=[], show_progress=False)
    tok.train_from_iterator(text, trainer)
    return json.loads(tok.to_str())


def with_bos(tj: dict, bos: str, bos_id: int) -> dict:
    tj["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }
    return tj


def tokenizer_for(name: str, config: dict) -> tuple[dict, dict]:
    """tokenizer.json and tokenizer_config.json for a fixture."""
    if config["vocab_size"] == 512:
        tj = json.loads((FIXTURES / "tokenizer-bpe512.json").read_text())
        cfg = {"bos_token": "<bos>", "eos_token": "<eos>", "add_bos_token": True, "chat_template": SIMPLE}
        return tj, cfg
    mt = config["model_type"]
    if mt == "qwen2":
        specials = ["<|unk|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tj = small_tokenizer(config["vocab_size"], specials, upper=True)
        cfg = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "add_bos_token": False, "chat_template": CHATML}
        return tj, cfg
    specials = ["<unk>", "<s>", "</s>"]
    tj = with_bos(small_tokenizer(config["vocab_size"], specials, upper=mt == "llama"), "<s>", 1)
    cfg = {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "chat_template": SIMPLE}
    return tj, cfg


def prepare(name: str, work: Path) -> tuple[Path, dict, dict]:
    """A copy of the fixture the converter accepts (see the module comment), and its tokenizer files."""
    src = FIXTURES / name
    d = work / name
    d.mkdir(parents=True)
    shutil.copy(src / "model.safetensors", d / "model.safetensors")
    config = json.loads((src / "config.json").read_text())
    config["architectures"] = [ARCHITECTURES[config["model_type"]]]
    if config["model_type"] == "deepseek_v3":
        config.setdefault("scoring_func", "sigmoid")
        config.setdefault("topk_method", "noaux_tc")
    (d / "config.json").write_text(json.dumps(config, indent=1))
    tj, tcfg = tokenizer_for(name, config)
    (d / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))
    (d / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=1))
    return d, config, tj


# --- patches of the converter (see the module comment) -----------------------------------------------------------

conv_base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"

_llama_params = conv_llama.LlamaModel.set_gguf_parameters


def _llama_params_with_window(self):
    _llama_params(self)
    if self.hparams.get("model_type") == "mistral" and self.hparams.get("sliding_window"):
        self.gguf_writer.add_sliding_window(self.hparams["sliding_window"])


conv_llama.LlamaModel.set_gguf_parameters = _llama_params_with_window

OLD_LAYOUT = {"on": False}
_ds_modify = conv_deepseek.DeepseekV2Model.modify_tensors
_ds_params = conv_deepseek.DeepseekV2Model.set_gguf_parameters


def _ds_modify_old(self, data_torch, name, bid):
    if OLD_LAYOUT["on"] and name.endswith("kv_b_proj.weight"):
        yield from conv_base.TextModel.modify_tensors(self, data_torch, name, bid)
        return
    yield from _ds_modify(self, data_torch, name, bid)


def _ds_params_old(self):
    _ds_params(self)
    if not OLD_LAYOUT["on"]:
        return
    kv = self.gguf_writer.kv_data[0]
    arch = self.gguf_writer.arch
    h = self.hparams
    for k in ("key_length_mla", "value_length_mla"):
        kv.pop(f"{arch}.attention.{k}", None)
    kv.pop(f"{arch}.attention.key_length", None)
    kv.pop(f"{arch}.attention.value_length", None)
    self.gguf_writer.add_key_length(h["qk_nope_head_dim"] + h["qk_rope_head_dim"])
    self.gguf_writer.add_value_length(h["v_head_dim"])


conv_deepseek.DeepseekV2Model.modify_tensors = _ds_modify_old
conv_deepseek.DeepseekV2Model.set_gguf_parameters = _ds_params_old


def convert(model_dir: Path, out: Path, outtype: str = "f32", old_layout: bool = False) -> None:
    OLD_LAYOUT["on"] = old_layout
    argv = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", str(model_dir), "--outfile", str(out), "--outtype", outtype]
    try:
        convert_hf_to_gguf.main()
    finally:
        sys.argv = argv
        OLD_LAYOUT["on"] = False
    print(f"wrote {out} ({out.stat().st_size} bytes)")


# --- the K-quant file -----------------------------------------------------------------------------------------------

def random_blocks(qtype: gguf.GGMLQuantizationType, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Valid blocks of random content: random bytes, with every f16 scale set to a small finite value."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    nb = rows * cols // block
    b = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)

    def f16(col: int, lo: float, hi: float) -> None:
        b[:, col:col + 2] = rng.uniform(lo, hi, nb).astype(np.float16).view(np.uint8).reshape(nb, 2)

    Q = gguf.GGMLQuantizationType
    if qtype in (Q.Q8_0, Q.Q4_0):
        f16(0, 0.002, 0.01)
    elif qtype in (Q.Q4_K, Q.Q5_K):
        f16(0, 0.0005, 0.002)
        f16(2, 0.0005, 0.002)
    elif qtype == Q.Q6_K:
        b[:, 192:208] = rng.integers(-20, 20, size=(nb, 16), dtype=np.int8).view(np.uint8)
        f16(208, 0.0002, 0.001)
    return b.reshape(rows, cols // block * size)


def mixed_quant(out: Path) -> None:
    rng = np.random.default_rng(16)
    D, H, KV, HD, F, V = 256, 2, 1, 32, 64, 48
    Q = gguf.GGMLQuantizationType
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name("mixed-quant")
    w.add_vocab_size(V)
    w.add_context_length(64)
    w.add_embedding_length(D)
    w.add_feed_forward_length(F)
    w.add_block_count(1)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_key_length(HD)
    w.add_value_length(HD)
    w.add_rope_dimension_count(HD)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)

    def mat(name: str, qtype, rows: int, cols: int) -> None:
        w.add_tensor(name, random_blocks(qtype, rows, cols, rng), raw_dtype=qtype)

    def vec(name: str, n: int) -> None:
        w.add_tensor(name, (1 + 0.1 * rng.standard_normal(n)).astype(np.float32))

    mat("token_embd.weight", Q.Q4_K, V, D)
    vec("output_norm.weight", D)
    mat("output.weight", Q.Q6_K, V, D)
    vec("blk.0.attn_norm.weight", D)
    vec("blk.0.ffn_norm.weight", D)
    mat("blk.0.attn_q.weight", Q.Q4_K, H * HD, D)
    mat("blk.0.attn_k.weight", Q.Q5_K, KV * HD, D)
    mat("blk.0.attn_v.weight", Q.Q6_K, KV * HD, D)
    mat("blk.0.attn_output.weight", Q.Q8_0, D, H * HD)
    mat("blk.0.ffn_gate.weight", Q.Q4_0, F, D)
    mat("blk.0.ffn_up.weight", Q.Q4_K, F, D)
    mat("blk.0.ffn_down.weight", Q.Q8_0, D, F)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out} ({out.stat().st_size} bytes)")


def broken(out: Path, problem: str) -> None:
    """Tiny llama-arch files that must be refused with a one-line error: unknown arch, a type mla-ts does not read
    (IQ4_NL), a missing tensor."""
    rng = np.random.default_rng(7)
    D, H, HD, F, V = 16, 2, 8, 32, 8
    w = gguf.GGUFWriter(str(out), "falcon" if problem == "arch" else "llama")
    for key, val in [("vocab_size", V), ("context_length", 32), ("embedding_length", D), ("feed_forward_length", F),
                     ("block_count", 1), ("attention.head_count", H), ("attention.head_count_kv", H),
                     ("rope.dimension_count", HD)]:
        w.add_uint32(f"{w.arch}.{key}", val)
    w.add_float32(f"{w.arch}.attention.layer_norm_rms_epsilon", 1e-5)

    def f32(name: str, *shape: int) -> None:
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))

    f32("token_embd.weight", V, D)
    f32("output_norm.weight", D)
    f32("output.weight", V, D)
    f32("blk.0.attn_norm.weight", D)
    f32("blk.0.ffn_norm.weight", D)
    for n in ["attn_q", "attn_k", "attn_v", "attn_output"]:
        if problem == "missing" and n == "attn_k":
            continue
        f32(f"blk.0.{n}.weight", D, D)
    f32("blk.0.ffn_gate.weight", F, D)
    f32("blk.0.ffn_up.weight", F, D)
    if problem == "type":
        # IQ4_NL blocks (f16 d + 16 bytes of 4-bit indices into a non-linear table): valid bytes, a type mla-ts refuses
        blocks = rng.integers(0, 256, (D, F // 32, 18), dtype=np.uint8)
        blocks[:, :, 0:2] = np.full((D, F // 32), 0.01, dtype=np.float16).view(np.uint8).reshape(D, F // 32, 2)
        w.add_tensor("blk.0.ffn_down.weight", blocks.reshape(D, -1), raw_dtype=gguf.GGMLQuantizationType.IQ4_NL)
    else:
        f32("blk.0.ffn_down.weight", D, F)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out} ({out.stat().st_size} bytes)")


def main() -> None:
    everything = "--all" in sys.argv
    OUT.mkdir(parents=True, exist_ok=True)
    EXTRA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ["tiny-llama", "tiny-qwen2", "tiny-mistral"]:
            d, _, tj = prepare(name, work)
            convert(d, OUT / f"{name}.gguf")
            (OUT / f"{name}.tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))
        d, _, _ = prepare("tiny-deepseek-v3", work)
        convert(d, OUT / "tiny-deepseek-v3.gguf")
        # DeepSeek-V2 with expert groups (softmax, group max): llama.cpp routes it by V3's rule, mla-ts as transformers
        d, _, _ = prepare("tiny-deepseek-v2-groups", work)
        convert(d, OUT / "tiny-deepseek-v2-groups.gguf")
        d, _, _ = prepare("tiny-mla-dense", work)
        convert(d, OUT / "tiny-mla-dense-kvb.gguf", old_layout=True)
        convert(work / "tiny-mistral", OUT / "tiny-mistral-q8_0.gguf", outtype="q8_0")
        mixed_quant(OUT / "mixed-quant.gguf")
        for problem in ["arch", "type", "missing"]:
            broken(OUT / f"bad-{problem}.gguf", problem)
        if everything:
            convert(work / "tiny-mla-dense", EXTRA / "tiny-mla-dense.gguf")
            d, _, _ = prepare("tiny-deepseek-v2-lite", work)
            convert(d, EXTRA / "tiny-deepseek-v2-lite.gguf")
            convert(d, EXTRA / "tiny-deepseek-v2-lite-kvb.gguf", old_layout=True)
            convert(work / "tiny-deepseek-v3", EXTRA / "tiny-deepseek-v3-kvb.gguf", old_layout=True)
            convert(work / "tiny-deepseek-v3", EXTRA / "tiny-deepseek-v3-q8_0.gguf", outtype="q8_0")


if __name__ == "__main__":
    main()
