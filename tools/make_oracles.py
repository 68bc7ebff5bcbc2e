#!/usr/bin/env python3
"""Generate the Python-free test oracles for ferry.

Usage (from the repo root):
    /work/venv/bin/python tools/make_oracles.py --out tests/data            # generate everything
    /work/venv/bin/python tools/make_oracles.py --out tests/data --verify   # reload from disk and check

Outputs
  tests/data/oracles/<fixture>/     tiny random-weight MoE checkpoints (HF layout) + reference.safetensors/json
  tests/data/tokenizers/            corpus.jsonl + <fixture>.expected.jsonl + README.md

Pinned package versions: tools/requirements-oracles.txt.  Everything is seeded; the trained byte-level BPE
tokenizers depend on the running interpreter's stdlib sources (used as training text), so by default an
already generated tokenizer.json in the output tree is reused (pass --retrain-tokenizers to retrain).
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import shutil
import sys
import sysconfig
import unicodedata
import zlib

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import tokenizers  # noqa: E402
import sentencepiece as spm  # noqa: E402
import safetensors  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file, load_file  # noqa: E402
from tokenizers import Tokenizer, Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaTokenizer,
    MixtralConfig,
    MixtralForCausalLM,
    OlmoeConfig,
    OlmoeForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

transformers.utils.logging.set_verbosity_error()
try:
    transformers.utils.logging.disable_progress_bar()
except Exception:  # pragma: no cover
    pass

V5 = int(transformers.__version__.split(".")[0]) >= 5
N_GEN = 32                 # greedy tokens per prompt
FULL_LOGITS_MAX_V = 4096   # above this vocab size only the last position's logits are stored
MIN_MARGIN = 1e-3          # reject seeds whose greedy steps have a top1-top2 logit gap below this
MAX_SEED_TRIES = 40
MIXTRAL_SPM_SHA256 = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"

QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def log(*a):
    print(*a, flush=True)


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer test corpus (also mixed into BPE training text)
# ----------------------------------------------------------------------------------------------------------------
def build_corpus() -> list[str]:
    c: list[str] = []
    # --- edge cases
    c += ["", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n ", "a", "A", ".", "!", "?", "-", "_", "0", "9",
          "\u00a0", "\u3000", "\u200b", "\ufeff"]
    # --- control characters / lone bytes (JSON can only carry valid Unicode, so these are code points < 0x20 etc.)
    c += ["\x00", "\x01\x02\x03", "\x07bell", "a\x08b", "\x0b\x0c", "\x1b[31mred\x1b[0m", "\x7f", "tab\there\x00end",
          "\x85next line", "\u2028line sep\u2029para sep", "\x1f\x1e\x1d"]
    # --- ASCII prose
    prose = [
        "Hello world",
        "Hello world!",
        "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
        "It was the best of times, it was the worst of times, it was the age of wisdom.",
        "Mixture-of-experts models route each token to a small subset of feed-forward networks.",
        "Once upon a time, in a land far, far away, there lived a small tokenizer.",
        "Please call Stella. Ask her to bring these things with her from the store.",
        "e.g. i.e. etc. vs. Mr. Mrs. Dr. St. a.m. p.m.",
        "email me at someone@example.com or visit https://example.org/path?q=1&r=two#frag",
        "C:\\Users\\ferry\\Documents\\file.txt and /usr/local/bin/ferry --help",
        "\"Quoted text\" and 'single quotes' and `backticks`",
        "(parentheses) [brackets] {braces} <angles>",
        "semi;colon:colon,comma.period...ellipsis\u2026",
        "snake_case camelCase PascalCase kebab-case SCREAMING_CASE",
        "#hashtag @mention $dollar %percent ^caret &amp *star",
        "~tilde |pipe \\backslash /slash =equals +plus",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "abababababababababababababababababab",
        "!!!!!!!!!!????????........,,,,,,,,",
        "----------==========__________**********",
    ]
    c += prose
    # --- contractions
    c += ["I'm", "I'M", "DON'T", "don't", "Don't stop", "we've", "WE'VE", "they're", "THEY'RE", "she'll", "SHE'LL",
          "he'd", "HE'D", "it's", "IT'S", "I'm sure you're right, but we'll see what they'd say.",
          "'s 't 're 've 'm 'll 'd", "rock'n'roll", "O'Neill's", "y'all'd've", "the dogs' bones", "'quoted'"]
    # --- whitespace runs
    c += ["two  spaces", "three   spaces", "eight        spaces", "  leading two", "trailing two  ", " lead", "trail ",
          "   ", "\t\ttabs\t\t", "mixed \t \t whitespace", "line1\nline2", "line1\n\nline2", "line1\n\n\nline2",
          "crlf\r\nline", "cr\ronly", "\r\n\r\n", "  \n  \n", "indent\n    four\n        eight", "a \n b",
          "trailing newline\n", "\nleading newline", " \t\n\r\x0b\x0c", "word \u00a0nbsp", "x" + " " * 17 + "y"]
    # --- digits and numbers
    c += ["0", "12", "123", "1234", "12345", "123456789", "1234567890123456789012345", "3.14159", "-42", "+7",
          "1,000,000", "1.000.000,50", "1e-5", "6.02e23", "0x1F 0b1010 0o777", "v1.2.3-rc.4", "2024-05-17T12:34:56Z",
          "$19.99", "\u20ac20", "50%", "10:30am", "3/4", "\u00bd \u2153 \u00b2 \u00b3", "\u0661\u0662\u0663",
          "\u0967\u0968\u0969", "\uff11\uff12\uff13", "phone: +1 (555) 123-4567", "IPv4 192.168.0.1"]
    # --- code
    c += [
        "def forward(self, x):\n    return self.w2(F.silu(self.w1(x)) * self.w3(x))\n",
        "import torch\nimport numpy as np\n\nx = np.zeros((4, 4), dtype=np.float32)\n",
        "for i in range(10):\n\tif i % 2 == 0:\n\t\tprint(f\"{i} is even\")\n",
        "class Foo(Bar):\n    \"\"\"Docstring.\"\"\"\n    pass\n",
        "lambda x: x ** 2 if x > 0 else -x  # comment",
        "#include <vector>\n#include <cstdint>\n\nint main() {\n  std::vector<int> v{1, 2, 3};\n  return 0;\n}\n",
        "template <typename T>\nT max(T a, T b) { return a > b ? a : b; }",
        "auto it = std::find_if(v.begin(), v.end(), [&](const auto& x) { return x->id == id; });",
        "ptr->next = nullptr; a <<= 2; b >>= 3; c != d && e || !f;",
        "std::unique_ptr<Tensor> t = std::make_unique<Tensor>(shape, DType::kBF16);",
        "{\"name\": \"ferry\", \"version\": \"0.1.0\", \"tags\": [\"moe\", \"llm\"], \"ok\": true, \"n\": null}",
        "{\n  \"hidden_size\": 4096,\n  \"num_experts\": 8,\n  \"rope_theta\": 1000000.0\n}",
        "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
        "<html><body><p class=\"x\">Hello</p></body></html>",
        "$ cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2",
        "x = [1,2,3]\ny = {k: v for k, v in zip(a, b)}\n",
        "if (a == b) {\n\treturn;\n}\r\nelse {}\r\n",
        "/* block comment */ // line comment\n",
        "fn main() { println!(\"hi {}\", 42); }",
        "   \n\n    def indented():\n        pass",
    ]
    # --- unicode: accents, combining marks, NFC vs NFD
    c += [
        "caf\u00e9", "cafe\u0301", "na\u00efve", "nai\u0308ve", "r\u00e9sum\u00e9", "re\u0301sume\u0301",
        "\u00c5ngstr\u00f6m", "\u212bngstr\u00f6m", "A\u030angstro\u0308m", "\ufb01nance \ufb02ow", "\u1e9b\u0323",
        "Stra\u00dfe STRASSE", "\u0130stanbul \u0131", "Cr\u00e8me br\u00fbl\u00e9e", "Z\u00fcrich, M\u00fcnchen, K\u00f6ln",
        "\u00bfQu\u00e9 tal? \u00a1Muy bien!", "\u0161\u010d\u0159\u017e\u00fd\u00e1\u00ed\u00e9 \u0141\u00f3d\u017a",
        "\u1100\u1161\u11a8", "\uac01", "\u1112\u1161\u11ab\u1100\u1173\u11af", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
        "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333",
        "\u03a9 \u2126 \u00b5 \u03bc", "\u0394\u03b5\u03bb\u03c4\u03b1 \u03b1\u03bb\u03c6\u03b1 \u03b2\u03ae\u03c4\u03b1",
        "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u041a\u0430\u043a \u0434\u0435\u043b\u0430?",
        "\u0423\u043a\u0440\u0430\u0457\u043d\u0430 \u0457\u0436\u0430\u043a",
        "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",
        "Ti\u1ebfng Vi\u1ec7t c\u00f3 d\u1ea5u", "\u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8",
        "\u0531\u0580\u0574\u0565\u0576\u056b\u0561", "\u1e00\u1e01 \u0100\u0101 \u01cd\u01ce",
        "\U0001d400\U0001d401\U0001d402 \U0001d552\U0001d553", "\u2460\u2461\u2462 \u2474\u2475",
        "\u2200x\u2208\u211d: x\u00b2 \u2265 0 \u21d2 \u221ax \u2208 \u211d", "\u2190\u2191\u2192\u2193 \u2194 \u21d4",
    ]
    # --- CJK
    c += [
        "\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8",
        "\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u6563\u6b65\u5427\u3002",
        "\u6df7\u5408\u4e13\u5bb6\u6a21\u578b\uff08MoE\uff09\u662f\u4e00\u79cd\u7a00\u758f\u67b6\u6784\u3002",
        "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002", "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c",
        "\u30ab\u30bf\u30ab\u30ca \u3072\u3089\u304c\u306a \u6f22\u5b57", "\uff8a\uff9d\uff76\uff78\uff76\uff80\uff76\uff85",
        "\u6771\u4eac\u30bf\u30ef\u30fc\u306f333\u30e1\u30fc\u30c8\u30eb\u3067\u3059",
        "\ud55c\uad6d\uc5b4\ub294 \ud55c\uae00\ub85c \uc501\ub2c8\ub2e4.", "\u4e2d\u6587English\u6df7\u5408mixed\u6587\u672c",
        "\u300c\u5f15\u7528\u300d\u3010\u62ec\u5f27\u3011\u300a\u4e66\u540d\u300b", "\U00020000\U0002a6d6 \U00020bb7",
        "\u9f98\u9f98\u9f98 \u9a6c\u9a6c\u864e\u864e", "\u4e00\u4e8c\u4e09\u56db\u4e94\u516d\u4e03\u516b\u4e5d\u5341",
    ]
    # --- Arabic, Hindi and other scripts
    c += [
        "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
        "\u0627\u0644\u0644\u063a\u0629 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u062c\u0645\u064a\u0644\u0629 \u062c\u062f\u0627\u064b",
        "\u0628\u0650\u0633\u0652\u0645\u0650 \u0627\u0644\u0644\u0651\u064e\u0647\u0650",
        "\u0639\u062f\u062f \u0661\u0662\u0663 and 123 mixed", "\u0641\u0627\u0631\u0633\u06cc \u0632\u0628\u0627\u0646",
        "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
        "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e \u092c\u0939\u0941\u0924 \u0938\u0941\u0902\u0926\u0930 \u0939\u0948\u0964",
        "\u0915\u094d\u0937 \u0924\u094d\u0930 \u091c\u094d\u091e \u0936\u094d\u0930", "\u0ba4\u0bae\u0bbf\u0bb4\u0bcd \u0bae\u0bca\u0bb4\u0bbf",
        "\u09ac\u09be\u0982\u09b2\u09be \u09ad\u09be\u09b7\u09be", "\u12a0\u121b\u122d\u129b", "\u1780\u1798\u17d2\u1796\u17bb\u1787\u17b6",
        "\u0f56\u0f7c\u0f51\u0f0b\u0f61\u0f72\u0f42", "\u1019\u103c\u1014\u103a\u1019\u102c\u1005\u102c",
    ]
    # --- emoji
    c += [
        "\U0001f600", "\U0001f44d", "\U0001f44d\U0001f3fd", "\U0001f44b\U0001f3ff\U0001f44b\U0001f3fb",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466", "\U0001f3f3\ufe0f\u200d\U0001f308",
        "\U0001f469\U0001f3fe\u200d\U0001f4bb", "\U0001f1fa\U0001f1f8\U0001f1ef\U0001f1f5\U0001f1e9\U0001f1ea",
        "\u2764\ufe0f \u2764", "I \u2764\ufe0f NY \U0001f5fd", "\U0001f680\U0001f680\U0001f680 to the moon",
        "\u0031\ufe0f\u20e3 \u0023\ufe0f\u20e3", "\U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1",
        "Great job! \U0001f389\U0001f38a\U0001f973", "\U0001f415\u200d\U0001f9ba", "\u263a\ufe0e \u263a\ufe0f",
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    ]
    # --- special tokens embedded in text
    c += [
        "<s>", "</s>", "<unk>", "<s>Hello</s>", "Hello <s> world </s>", "<s> [INST] hi [/INST]",
        "<|endoftext|>", "text<|endoftext|>more", "<|endoftext|><|endoftext|>",
        "<|im_start|>user\nhi<|im_end|>", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
        "<|padding|>", "a<|padding|>b", "< s >", "<|im_start|", "|im_end|>", "<<s>>", "<|endoftext|>\n\n",
    ]
    # --- longer mixed paragraphs
    c += [
        "In 2023, researchers at a lab in Z\u00fcrich trained a 47B-parameter MoE (8 experts, top-2) on 8\u00d7A100 GPUs.\n"
        "Results: perplexity 3.2 \u2192 2.9; throughput +35%. \U0001f680",
        "Der schnelle braune Fuchs springt \u00fcber den faulen Hund. Fran\u00e7ais: l'\u00e9l\u00e8ve a \u00e9t\u00e9 l\u00e0.",
        "Q: What's 2+2?\nA: It's 4.\n\nQ: And 10/3?\nA: About 3.333...",
        "\t\tResult:\t42\n\t\tStatus:\tOK\r\n",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
        "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris.",
        "## Heading\n\n- item one\n- item two\n  - nested\n\n1. first\n2. second\n\n> quote\n\n```python\nprint(1)\n```",
        "| col1 | col2 |\n|------|------|\n| 1    | 2    |",
        "\u6df7\u5408 English \u548c\u4e2d\u6587, \u0645\u0639 \u0627\u0644\u0639\u0631\u0628\u064a\u0629, \u0914\u0930 \u0939\u093f\u0928\u094d\u0926\u0940, "
        "\u0438 \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \U0001f30d",
    ]
    # --- programmatic variants (deterministic)
    words = ["alpha", "Beta", "GAMMA", "delta's", "epsilon", "z\u00eata", "\u00e9ta", "\u03b8\u03ae\u03c4\u03b1",
             "\u4e09", "\U0001f642", "42", "x_1", "don't", "I'll", "n\u00e4chste"]
    for i in range(40):
        w1, w2, w3 = words[i % len(words)], words[(i * 7 + 3) % len(words)], words[(i * 11 + 5) % len(words)]
        sep = [" ", "  ", "\t", "\n", " \n", "", "   ", "\r\n"][i % 8]
        c.append(f"{w1}{sep}{w2}{sep if i % 3 else ' '}{w3}{'!' * (i % 3)}{str(i * 137) if i % 4 == 0 else ''}")
    for n in [7, 77, 777, 7777, 77777, 123456, 9999999, 31415926535, 2718281828459045]:
        c.append(f"n={n}")
    for k in range(1, 9):
        c.append(" " * k + "x" + " " * (9 - k))
        c.append("\n" * k + "y")
    # deduplicate, keep order
    seen, out = set(), []
    for s in c:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


EXTRA_TRAIN_TEXT = "\n".join([
    "The quick brown fox jumps over the lazy dog. Mixture-of-experts models are sparse.",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u6211\u4eec\u4eca\u5929\u5b66\u4e60\u6df7\u5408\u4e13\u5bb6\u6a21\u578b\u3002",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002\u3053\u3093\u306b\u3061\u306f\u3002",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4.",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u042d\u0442\u043e \u0442\u0435\u0441\u0442.",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645. \u0647\u0630\u0627 \u0627\u062e\u062a\u0628\u0627\u0631.",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e\u0964 \u092f\u0939 \u090f\u0915 \u092a\u0930\u0940\u0915\u094d\u0937\u0923 \u0939\u0948\u0964",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 Z\u00fcrich M\u00fcnchen \u00e9l\u00e8ve \u00e9t\u00e9",
    "\U0001f600 \U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f680 \u2764\ufe0f \U0001f389",
])


def training_texts() -> list[str]:
    """Deterministic BPE training text: stdlib sources (sorted, capped) + multilingual lines + the test corpus."""
    stdlib = sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob(os.path.join(stdlib, "*.py")))
    texts, total = [], 0
    for f in files:
        try:
            with open(f, encoding="utf-8") as fh:
                t = fh.read()
        except (UnicodeDecodeError, OSError):
            continue
        texts.append(t)
        total += len(t)
        if total > 3_000_000:
            break
    texts += [EXTRA_TRAIN_TEXT] * 30
    texts += build_corpus() * 3
    return texts


# ----------------------------------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------------------------------
def train_qwen2_style(vocab_size: int = 1500) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_texts(), trainer=trainer)
    # Qwen layout: specials appended after the BPE vocab
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    return tok


def train_olmoe_style(vocab_size: int = 1200) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False, byte_fallback=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    # GPT-NeoX layout: specials first (<|endoftext|>=0, <|padding|>=1)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_texts(), trainer=trainer)
    return tok


def mixtral_spm_path() -> str:
    import mistral_common
    p = os.path.join(os.path.dirname(mistral_common.__file__), "data", "tokenizer.model.v1")
    h = hashlib.sha256(open(p, "rb").read()).hexdigest()
    if h != MIXTRAL_SPM_SHA256:
        raise SystemExit(f"unexpected sha256 of {p}: {h}")
    return p


def write_json(path, obj, indent=2):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent, sort_keys=False)
        f.write("\n")


def minify_json_file(path):
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(d, f, ensure_ascii=False, separators=(",", ":"))


def save_mixtral_tokenizer(out_dir: str) -> dict:
    """tokenizer.model (copied) + tokenizer.json/tokenizer_config.json converted by transformers."""
    src = mixtral_spm_path()
    tmp = os.path.join(out_dir, "_spm_tmp")
    os.makedirs(tmp, exist_ok=True)
    shutil.copyfile(src, os.path.join(tmp, "tokenizer.model"))
    if V5:
        hf = LlamaTokenizer.from_pretrained(tmp, add_bos_token=True, add_eos_token=False)
    else:  # pragma: no cover - transformers 4.x path
        from transformers import LlamaTokenizerFast
        hf = LlamaTokenizerFast(vocab_file=os.path.join(tmp, "tokenizer.model"), add_bos_token=True,
                                add_eos_token=False, legacy=True)
    hf.save_pretrained(out_dir)
    shutil.rmtree(tmp)
    shutil.copyfile(src, os.path.join(out_dir, "tokenizer.model"))
    # keep the fixture small: tokenizer.json written compactly (same JSON content)
    minify_json_file(os.path.join(out_dir, "tokenizer.json"))
    # make the BOS/EOS convention explicit, as in the hub's Mixtral tokenizer_config.json
    tc_path = os.path.join(out_dir, "tokenizer_config.json")
    tc = json.load(open(tc_path, encoding="utf-8"))
    for junk in ("is_local", "local_files_only"):   # environment-dependent keys written by transformers 5
        tc.pop(junk, None)
    tc.setdefault("add_bos_token", True)
    tc.setdefault("add_eos_token", False)
    write_json(tc_path, tc)
    return {"hf_tokenizer_class": type(hf).__name__}


def save_bpe_tokenizer(tok: Tokenizer, out_dir: str, kind: str) -> None:
    """tokenizer.json (as trained) + tokenizer_config.json via transformers."""
    if kind == "qwen2":
        kw = dict(bos_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token=None,
                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    else:
        kw = dict(bos_token=None, eos_token="<|endoftext|>", pad_token="<|padding|>", unk_token=None)
    hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tok.to_str()), clean_up_tokenization_spaces=False,
                                 **kw)
    hf.save_pretrained(out_dir)
    # the byte-exact trained tokenizer.json is the reference
    tok.save(os.path.join(out_dir, "tokenizer.json"), pretty=True)
    tc_path = os.path.join(out_dir, "tokenizer_config.json")
    tc = json.load(open(tc_path, encoding="utf-8"))
    tc["add_bos_token"] = False
    tc["add_eos_token"] = False
    tc["add_prefix_space"] = False
    # Qwen2Tokenizer rebuilds exactly this pipeline from vocab/merges.  GPTNeoXTokenizer would rebuild it with an
    # NFC normalizer (as in the real GPT-NeoX tokenizer.json), which this normalizer-less tokenizer lacks, so the
    # olmoe-style fixture names the generic class that loads tokenizer.json verbatim.
    tc["tokenizer_class"] = "Qwen2Tokenizer" if kind == "qwen2" else "PreTrainedTokenizerFast"
    if kind == "qwen2":
        tc["chat_template"] = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
                               "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
                               "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    write_json(tc_path, tc)


def get_bpe_tokenizer(out_root: str, fixture: str, kind: str, retrain: bool) -> Tokenizer:
    cached = os.path.join(out_root, "oracles", fixture, "tokenizer.json")
    if not retrain and os.path.exists(cached):
        log(f"  reusing trained tokenizer {cached}")
        return Tokenizer.from_file(cached)
    log(f"  training {kind}-style byte-level BPE ...")
    return train_qwen2_style() if kind == "qwen2" else train_olmoe_style()


# ----------------------------------------------------------------------------------------------------------------
# Model fixtures
# ----------------------------------------------------------------------------------------------------------------
COMMON = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=512, rms_norm_eps=1e-5)

PROMPTS_EN = [   # chosen so that the HF tokenizer.json agrees with SentencePiece (no runs of spaces)
    "Hi there",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\U0001f600",
    "Experts route tokens; caf\u00e9 123.",
    "def forward(self, x):\n\treturn x * 2",
    "Once upon a time, there lived a tiny tokenizer who loved 12345.",
]
PROMPTS_BPE = [
    "Hi there",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\U0001f600",
    "def forward(self, x):\n    return x * 2",
    "Experts route tokens; caf\u00e9 123.",
    "The quick brown fox jumps over the lazy dog.",
]


def rope_kw(theta):
    return {"rope_parameters": {"rope_type": "default", "rope_theta": theta}} if V5 else {"rope_theta": theta}


def randomize_(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name:
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif name.endswith("bias"):
                v = 0.1 * torch.randn(p.shape, generator=g)
            else:
                v = torch.randn(p.shape, generator=g) * (p.shape[-1] ** -0.5)
            # bf16-representable values: BF16 files are then lossless and the fp32 reference is exact
            p.copy_(v.to(torch.bfloat16).to(torch.float32))


def gen_config(model) -> GenerationConfig:
    """Pure greedy, never stops on EOS (no logits processors at all), exactly N_GEN tokens."""
    pad = model.config.pad_token_id
    if pad is None:
        pad = 0
    return GenerationConfig(do_sample=False, max_new_tokens=N_GEN, min_new_tokens=None, eos_token_id=None,
                            pad_token_id=pad, bos_token_id=None, num_beams=1, temperature=None, top_p=None,
                            top_k=None, repetition_penalty=None, use_cache=True, output_logits=True,
                            return_dict_in_generate=True)


def run_reference(model, prompts_ids: list[list[int]], small_vocab: bool) -> tuple[dict, dict]:
    ref, stats = {}, {"min_greedy_margin": float("inf"), "logit_min": float("inf"), "logit_max": -float("inf")}
    V = model.config.vocab_size
    absmax = []
    for i, ids in enumerate(prompts_ids):
        x = torch.tensor([ids], dtype=torch.long)
        with torch.no_grad():
            o = model(input_ids=x, use_cache=False, output_hidden_states=(i == 0), output_router_logits=(i == 0))
            lg = o.logits[0].float()
            g = model.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=gen_config(model))
        seq = g.sequences[0, len(ids):].to(torch.int64)
        assert seq.numel() == N_GEN, (seq.shape, N_GEN)
        step_logits = torch.stack([s[0].float() for s in g.logits])      # [N_GEN, V]
        assert torch.equal(step_logits.argmax(-1), seq), "generate() did not pick the argmax"
        top2 = step_logits.topk(2, dim=-1).values
        margin = (top2[:, 0] - top2[:, 1]).contiguous()
        ref[f"prompt.{i}"] = torch.tensor(ids, dtype=torch.int64)
        if small_vocab:
            ref[f"logits.{i}"] = lg.contiguous()
            ref[f"decode_logits.{i}"] = step_logits[-1].contiguous()
        else:
            ref[f"last_logits.{i}"] = lg[-1:].contiguous()
        ref[f"greedy.{i}"] = seq.contiguous()
        ref[f"greedy_margin.{i}"] = margin
        if i == 0:
            # debugging aids for prompt 0 only
            hs = o.hidden_states
            for l, h in enumerate(hs):
                ref[f"hidden.0.{l}"] = h[0].float().contiguous()
            rl = [r for r in (getattr(o, "router_logits", None) or []) if r is not None]
            moe_layers = [l for l, layer in enumerate(model.model.layers)
                          if hasattr(layer.mlp, "gate") and hasattr(layer.mlp, "experts")]
            assert len(rl) == len(moe_layers), (len(rl), moe_layers)
            for l, r in zip(moe_layers, rl):     # keyed by the real decoder layer index
                ref[f"router_logits.0.{l}"] = r.reshape(len(ids), -1).float().contiguous()
            stats["moe_layers"] = moe_layers
            stats["hidden0_is_embedding"] = bool(torch.equal(
                hs[0][0].float(), model.get_input_embeddings().weight[torch.tensor(ids)].float()))
            # is hidden_states[-1] post final norm? (logits == lm_head(hidden[-1]))
            lm = model.get_output_embeddings().weight.float()
            stats["hidden_last_is_post_norm"] = bool(torch.allclose(hs[-1][0].float() @ lm.T, lg, atol=1e-4))
            stats["n_hidden_states"] = len(hs)
        stats["min_greedy_margin"] = min(stats["min_greedy_margin"], float(margin.min()))
        stats["logit_min"] = min(stats["logit_min"], float(lg.min()))
        stats["logit_max"] = max(stats["logit_max"], float(lg.max()))
        absmax.append(float(lg.abs().max()))
        stats.setdefault("logit_std", []).append(float(lg.std()))
        stats.setdefault("greedy", []).append(seq.tolist())
    stats["logit_std"] = float(np.mean(stats["logit_std"]))
    return ref, stats


def shard_size_for(model, n_shards=3) -> str:
    total = sum(p.numel() * 2 for p in model.parameters())
    return f"{max(1, total // n_shards // 1000 + 1)}KB"


def fused_expert_save(model, out_dir: str, dtype, max_shard_size):
    """Save with the fused expert layout (transformers 5 in-memory names)."""
    if V5:
        model.to(dtype).save_pretrained(out_dir, save_original_format=False, max_shard_size=max_shard_size)
        model.float()
        return
    raise SystemExit("fused layout writing requires transformers>=5 (see requirements-oracles.txt)")


FIXTURES = {}


def fixture(name):
    def deco(fn):
        FIXTURES[name] = fn
        return fn
    return deco


@fixture("mixtral_spm")
def fx_mixtral_spm(out_dir, ctx):
    sp = spm.SentencePieceProcessor(model_file=mixtral_spm_path())
    cfg = MixtralConfig(vocab_size=32000, **{**COMMON, "hidden_size": 32}, **rope_kw(1e6), intermediate_size=96,
                        num_local_experts=6, num_experts_per_tok=2, sliding_window=None, tie_word_embeddings=True,
                        bos_token_id=1, eos_token_id=2, pad_token_id=None, attn_implementation="eager")
    prompts = PROMPTS_EN
    ids = [[sp.bos_id()] + sp.encode(p) for p in prompts]
    return dict(cls=MixtralForCausalLM, cfg=cfg, prompts=prompts, ids=ids, tokenizer="spm", save="legacy",
                dtype=torch.bfloat16, family="mixtral",
                notes="Real Mixtral-8x7B SentencePiece tokenizer (mistral-common tokenizer.model.v1). Prompt ids = "
                      "[BOS=1] + SentencePieceProcessor.encode(text). Tied embeddings: lm_head.weight is absent; "
                      "use model.embed_tokens.weight. Legacy per-expert names "
                      "(block_sparse_moe.experts.E.w1/w2/w3). vocab > 4096 so only last_logits.{i} is stored.")


@fixture("mixtral_fused")
def fx_mixtral_fused(out_dir, ctx):
    cfg = MixtralConfig(vocab_size=384, **COMMON, **rope_kw(1e6), intermediate_size=96, num_local_experts=6,
                        num_experts_per_tok=2, sliding_window=None, tie_word_embeddings=False, bos_token_id=1,
                        eos_token_id=2, pad_token_id=0, attn_implementation="eager")
    g = torch.Generator().manual_seed(seed_of("mixtral_fused_prompts"))
    ids = [[1] + torch.randint(3, 384, (n - 1,), generator=g).tolist() for n in (3, 8, 13, 19, 24)]
    return dict(cls=MixtralForCausalLM, cfg=cfg, prompts=None, ids=ids, tokenizer=None, save="fused",
                dtype=torch.bfloat16, family="mixtral",
                notes="No tokenizer: prompts are random ids with BOS=1 first. Saved with the FUSED expert layout "
                      "(transformers 5 save_original_format=False): model.layers.N.mlp.experts.gate_up_proj "
                      "[E, 2I, H] (rows 0..I-1 = gate/w1, rows I..2I-1 = up/w3), model.layers.N.mlp.experts.down_proj "
                      "[E, H, I], router model.layers.N.mlp.gate.weight [E, H]. Sharded.")


@fixture("qwen2_moe_bpe")
def fx_qwen2(out_dir, ctx):
    tok = ctx["qwen2_tok"]
    V = ((tok.get_vocab_size() + 63) // 64) * 64
    eot = tok.token_to_id("<|endoftext|>")
    cfg = Qwen2MoeConfig(vocab_size=V, **COMMON, **rope_kw(1e6), intermediate_size=96, moe_intermediate_size=40,
                         shared_expert_intermediate_size=72, num_experts=8, num_experts_per_tok=3,
                         norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1], use_sliding_window=False,
                         tie_word_embeddings=False, bos_token_id=None, eos_token_id=eot, pad_token_id=eot,
                         qkv_bias=True, attn_implementation="eager")
    prompts = PROMPTS_BPE
    ids = [tok.encode(p, add_special_tokens=False).ids for p in prompts]
    return dict(cls=Qwen2MoeForCausalLM, cfg=cfg, prompts=prompts, ids=ids, tokenizer="qwen2", save="legacy",
                dtype=torch.bfloat16, family="qwen2_moe",
                notes="Trained byte-level BPE with the exact Qwen2 pre-tokenizer; no BOS (prompt ids = encode(text)). "
                      "vocab_size in config = tokenizer size rounded up to a multiple of 64 (padding rows never "
                      "produced by the tokenizer). q/k/v bias. Layer 1 is a dense MLP (mlp_only_layers=[1], "
                      "intermediate_size 96); layers 0 and 2 are sparse (8 experts, top-3, norm_topk_prob=false, "
                      "moe_intermediate_size 40) + sigmoid-gated shared expert (72).")


@fixture("qwen3_moe_bpe")
def fx_qwen3(out_dir, ctx):
    tok = ctx["qwen2_tok"]
    V = ((tok.get_vocab_size() + 63) // 64) * 64
    eot = tok.token_to_id("<|endoftext|>")
    cfg = Qwen3MoeConfig(vocab_size=V, **COMMON, **rope_kw(1e6), head_dim=24, intermediate_size=96,
                         moe_intermediate_size=40, num_experts=8, num_experts_per_tok=3, norm_topk_prob=True,
                         decoder_sparse_step=1, mlp_only_layers=[], use_sliding_window=False,
                         tie_word_embeddings=False, bos_token_id=None, eos_token_id=eot, pad_token_id=eot,
                         attention_bias=False, attn_implementation="eager")
    prompts = PROMPTS_BPE
    ids = [tok.encode(p, add_special_tokens=False).ids for p in prompts]
    return dict(cls=Qwen3MoeForCausalLM, cfg=cfg, prompts=prompts, ids=ids, tokenizer="qwen2", save="legacy",
                dtype=torch.bfloat16, family="qwen3_moe", shard=True,
                notes="Same tokenizer as qwen2_moe_bpe. head_dim=24 explicit (n_heads*head_dim=96 != hidden 64). "
                      "Per-head q_norm/k_norm [24]. 8 experts top-3, norm_topk_prob=true. Sharded, legacy "
                      "per-expert names (mlp.experts.E.{gate,up,down}_proj.weight).")


@fixture("olmoe_bpe")
def fx_olmoe(out_dir, ctx):
    tok = ctx["olmoe_tok"]
    V = ((tok.get_vocab_size() + 63) // 64) * 64
    eot = tok.token_to_id("<|endoftext|>")
    pad = tok.token_to_id("<|padding|>")
    cfg = OlmoeConfig(vocab_size=V, **COMMON, **rope_kw(1e4), intermediate_size=40, num_experts=8,
                      num_experts_per_tok=3, norm_topk_prob=False, clip_qkv=None, tie_word_embeddings=False,
                      bos_token_id=None, eos_token_id=eot, pad_token_id=pad, attention_bias=False,
                      attn_implementation="eager")
    prompts = PROMPTS_BPE
    ids = [tok.encode(p, add_special_tokens=False).ids for p in prompts]
    return dict(cls=OlmoeForCausalLM, cfg=cfg, prompts=prompts, ids=ids, tokenizer="olmoe", save="legacy",
                dtype=torch.bfloat16, family="olmoe",
                notes="Trained byte-level BPE, ByteLevel(use_regex=true) GPT-2 pre-tokenizer, no normalizer; specials "
                      "<|endoftext|>=0 (eos) and <|padding|>=1 (pad); no BOS. q_norm over the full q projection "
                      "[n_heads*head_dim=64], k_norm over [n_kv*head_dim=32]. 8 experts top-3, "
                      "norm_topk_prob=false, rope_theta 1e4.")


@fixture("qwen2_moe_tied_f32")
def fx_qwen2_tied(out_dir, ctx):
    cfg = Qwen2MoeConfig(vocab_size=256, **COMMON, **rope_kw(1e6), intermediate_size=96, moe_intermediate_size=40,
                         shared_expert_intermediate_size=72, num_experts=8, num_experts_per_tok=3,
                         norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1], use_sliding_window=False,
                         tie_word_embeddings=True, bos_token_id=None, eos_token_id=2, pad_token_id=0,
                         qkv_bias=True, attn_implementation="eager")
    g = torch.Generator().manual_seed(seed_of("qwen2_moe_tied_f32_prompts"))
    ids = [torch.randint(3, 256, (n,), generator=g).tolist() for n in (3, 6, 11, 17, 22)]
    return dict(cls=Qwen2MoeForCausalLM, cfg=cfg, prompts=None, ids=ids, tokenizer=None, save="legacy",
                dtype=torch.float32, family="qwen2_moe",
                notes="No tokenizer: prompts are random ids (no BOS). Weights saved as F32 (values are still "
                      "bf16-representable). tie_word_embeddings=true: lm_head.weight absent, use embed_tokens.")


def build_fixture(name: str, out_root: str, ctx: dict) -> dict:
    out_dir = os.path.join(out_root, "oracles", name)
    spec = FIXTURES[name](out_dir, ctx)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    lens = [len(x) for x in spec["ids"]]
    assert len(set(lens)) == len(lens) and min(lens) >= 3 and max(lens) <= 24, (name, lens)

    # ---- tokenizer files
    tok_info = {}
    if spec["tokenizer"] == "spm":
        tok_info = save_mixtral_tokenizer(out_dir)
    elif spec["tokenizer"] == "qwen2":
        save_bpe_tokenizer(ctx["qwen2_tok"], out_dir, "qwen2")
    elif spec["tokenizer"] == "olmoe":
        save_bpe_tokenizer(ctx["olmoe_tok"], out_dir, "olmoe")

    # ---- weights: pick the first seed whose greedy continuations have no near-tie (top1 - top2 >= MIN_MARGIN)
    small = spec["cfg"].vocab_size <= FULL_LOGITS_MAX_V
    for attempt in range(MAX_SEED_TRIES):
        seed = seed_of(name) + attempt
        torch.manual_seed(seed)
        model = spec["cls"](spec["cfg"]).eval().float()
        randomize_(model, seed)
        if spec["cfg"].tie_word_embeddings:
            assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
        ref, stats = run_reference(model, spec["ids"], small)
        if stats["min_greedy_margin"] >= MIN_MARGIN:
            break
        log(f"  {name}: seed {seed} has greedy margin {stats['min_greedy_margin']:.2e} < {MIN_MARGIN}, retrying")
    dtype = spec["dtype"]
    if spec["save"] == "fused":
        fused_expert_save(model, out_dir, dtype, shard_size_for(model, 3))
    else:
        kw = {"max_shard_size": shard_size_for(model, 3)} if spec.get("shard") else {}
        model.to(dtype).save_pretrained(out_dir, **kw)
        model.float()

    # ---- reference (computed above in fp32 from the bf16-representable weights)
    save_file(ref, os.path.join(out_dir, "reference.safetensors"), metadata={"format": "pt"})
    cfg_json = json.load(open(os.path.join(out_dir, "config.json")))
    rope_keys = {k: cfg_json[k] for k in ("rope_theta", "rope_parameters", "rope_scaling") if k in cfg_json}
    meta = {
        "prompts": spec["prompts"],
        "prompt_lengths": lens,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "tokenizers": tokenizers.__version__,
        "family": spec["family"],
        "model_class": spec["cls"].__name__,
        "weights_dtype": "BF16" if dtype == torch.bfloat16 else "F32",
        "expert_layout_on_disk": "fused" if spec["save"] == "fused" else "per-expert (legacy)",
        "tokenizer": spec["tokenizer"],
        "n_generated": N_GEN,
        "logits_stored": "full [len, V] logits.{i} + decode_logits.{i}" if small else "last position only: last_logits.{i} [1, V]",
        "rope_config_keys_written": rope_keys,
        "hidden_states_last_is_post_norm": stats["hidden_last_is_post_norm"],
        "n_hidden_states_prompt0": stats["n_hidden_states"],
        "hidden_states_first_is_embedding": stats["hidden0_is_embedding"],
        "moe_layers": stats["moe_layers"],
        "logit_range": [stats["logit_min"], stats["logit_max"]],
        "logit_mean_std": stats["logit_std"],
        "min_greedy_margin": stats["min_greedy_margin"],
        "seed": seed,
        "notes": spec["notes"],
        "format": "reference.safetensors: prompt.{i} I64 [len_i]; logits.{i} F32 [len_i, V] (no-cache forward of the "
                  "prompt alone) or last_logits.{i} F32 [1, V] if V > 4096; greedy.{i} I64 [32] greedy tokens "
                  "(generate with KV cache, no EOS stop, no logits processors); greedy_margin.{i} F32 [32] top1-top2 "
                  "logit gap at each greedy step; decode_logits.{i} F32 [V] raw logits of the 32nd decode step "
                  "(input = greedy[30] at position len_i+30; argmax = greedy[31]) when V <= 4096; hidden.0.{l} F32 "
                  "[len_0, H] hidden_states of prompt 0 (l=0 embeddings, l=1..L-1 after layer l, l=L after final "
                  "norm); router_logits.0.{layer} F32 [len_0, E] raw router logits (before softmax) of prompt 0, one per MoE layer, keyed by decoder layer index (dense layers have none).",
    }
    write_json(os.path.join(out_dir, "reference.json"), meta)
    for fn in os.listdir(out_dir):
        os.chmod(os.path.join(out_dir, fn), 0o644)
    log(f"  {name}: V={spec['cfg'].vocab_size} lens={lens} logits[{stats['logit_min']:.3f}, {stats['logit_max']:.3f}] "
        f"min_margin={stats['min_greedy_margin']:.2e} post_norm_last={stats['hidden_last_is_post_norm']}")
    return meta


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer oracle
# ----------------------------------------------------------------------------------------------------------------
def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def build_tokenizer_oracle(out_root: str, ctx: dict) -> None:
    tdir = os.path.join(out_root, "tokenizers")
    os.makedirs(tdir, exist_ok=True)
    corpus = build_corpus()
    assert len(corpus) >= 220, len(corpus)
    write_jsonl(os.path.join(tdir, "corpus.jsonl"), corpus)
    stats = {}

    # SentencePiece (Mixtral)
    sp = spm.SentencePieceProcessor(model_file=mixtral_spm_path())
    rows, rt_fail, hf_diff = [], [], []
    hf = Tokenizer.from_file(os.path.join(out_root, "oracles", "mixtral_spm", "tokenizer.json"))
    for s in corpus:
        ids = sp.encode(s)
        dec = sp.decode(ids)
        rows.append({"ids": ids, "decoded": dec})
        if dec != s:
            rt_fail.append(s)
        if hf.encode(s, add_special_tokens=False).ids != ids:
            hf_diff.append(s)
    write_jsonl(os.path.join(tdir, "mixtral_spm.expected.jsonl"), rows)
    stats["mixtral_spm"] = {"roundtrip_fail": rt_fail, "hf_tokenizer_json_differs": hf_diff}

    for fixture in ("qwen2_moe_bpe", "olmoe_bpe"):
        tok = Tokenizer.from_file(os.path.join(out_root, "oracles", fixture, "tokenizer.json"))
        rows, rt_fail, rt_fail_nfc = [], [], []
        for s in corpus:
            ids = tok.encode(s, add_special_tokens=False).ids
            dec = tok.decode(ids, skip_special_tokens=False)
            rows.append({"ids": ids, "decoded": dec})
            if dec != s:
                rt_fail.append(s)
                if dec != unicodedata.normalize("NFC", s):
                    rt_fail_nfc.append(s)
        write_jsonl(os.path.join(tdir, f"{fixture}.expected.jsonl"), rows)
        stats[fixture] = {"roundtrip_fail": rt_fail, "roundtrip_fail_after_nfc": rt_fail_nfc}
    write_tokenizer_readme(tdir, corpus, stats)
    ctx["tok_stats"] = stats


def _show(strings, n=12):
    if not strings:
        return "none"
    return ", ".join(json.dumps(s, ensure_ascii=False) for s in strings[:n]) + (" ..." if len(strings) > n else "")


def write_tokenizer_readme(tdir, corpus, stats):
    sm = stats["mixtral_spm"]
    q, o = stats["qwen2_moe_bpe"], stats["olmoe_bpe"]
    text = f"""# Tokenizer oracle

Generated by `tools/make_oracles.py` (versions: tokenizers {tokenizers.__version__}, sentencepiece
{spm.__version__}, transformers {transformers.__version__}; exact pins in `tools/requirements-oracles.txt`).
Do not edit by hand; regenerate with `/work/venv/bin/python tools/make_oracles.py --out tests/data`.

## Files
* `corpus.jsonl`: {len(corpus)} test strings, one JSON string per line (UTF-8; control characters appear as JSON
  escapes such as `\\u0000`). Covers ASCII prose, code (Python/C++/JSON/SQL), whitespace runs (spaces, tabs, `\\n`,
  `\\r\\n`, leading/trailing), numbers, contractions, accents and combining marks (NFC and NFD forms of the same
  word), CJK, Arabic, Hindi and other scripts, emoji (skin tones, ZWJ sequences, flags, keycaps, tag sequences),
  special-token strings embedded in text, the empty string, a single space and control characters.
* `<fixture>.expected.jsonl`: one JSON object per corpus line, same order: `{{"ids": [...], "decoded": "..."}}`.
  * `mixtral_spm.expected.jsonl`: `tests/data/oracles/mixtral_spm/tokenizer.model` (the real Mixtral-8x7B
    SentencePiece model, mistral-common `tokenizer.model.v1`, sha256 `{MIXTRAL_SPM_SHA256}`).
    `ids = sentencepiece.SentencePieceProcessor(model_file=...).encode(s)` (no BOS/EOS; add BOS=1 yourself),
    `decoded = sp.decode(ids)`.
  * `qwen2_moe_bpe.expected.jsonl`: `tests/data/oracles/qwen2_moe_bpe/tokenizer.json` (also used by
    `qwen3_moe_bpe`). `ids = tokenizers.Tokenizer.from_file(...).encode(s, add_special_tokens=False).ids`,
    `decoded = tok.decode(ids, skip_special_tokens=False)`.
  * `olmoe_bpe.expected.jsonl`: `tests/data/oracles/olmoe_bpe/tokenizer.json`, same calls.

## Tokenizer definitions
* Mixtral SPM: BPE, byte_fallback, add_dummy_prefix, identity normalizer, split_digits, remove_extra_whitespaces
  off. Control pieces `<unk>`=0, `<s>`=1, `</s>`=2. SentencePiece **never** produces control ids from text: the
  string `"<s>"` is encoded as ordinary pieces. Use libsentencepiece on `tokenizer.model`.
* qwen2-style (trained locally, {len(json.load(open(os.path.join(tdir, '..', 'oracles', 'qwen2_moe_bpe', 'tokenizer.json')))['model']['vocab'])} BPE tokens + 3 added specials at the end:
  `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`): normalizer NFC; pre-tokenizer
  `Sequence[Split(Regex(<Qwen2 regex>), behavior=Isolated), ByteLevel(add_prefix_space=false, use_regex=false)]`;
  BPE (no unk, no byte fallback, merges stored as 2-element arrays); decoder ByteLevel. No BOS.
  Qwen2 regex: `{QWEN2_REGEX}`
* olmoe-style (trained locally): no normalizer; pre-tokenizer `ByteLevel(add_prefix_space=false, use_regex=true)`,
  i.e. the GPT-2 regex `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{{L}}+| ?\\p{{N}}+| ?[^\\s\\p{{L}}\\p{{N}}]+|\\s+(?!\\S)|\\s+`;
  specials `<|endoftext|>`=0 and `<|padding|>`=1 (added tokens, at the start of the vocab). No BOS.
* Added (special) tokens of the `tokenizer.json` files ARE matched in raw text (`add_special_tokens=False` only
  disables the post-processor): e.g. `"<|im_start|>user\\nhi<|im_end|>"` yields the special ids. Split the text
  on added tokens first (longest match, left to right), then run normalizer + pre-tokenizer + BPE on the pieces
  in between.

## Round-trip properties (checked by the generator)
* qwen2-style byte-level BPE: `decode(encode(s)) == NFC(s)` for every corpus line
  (failures after NFC: {len(q['roundtrip_fail_after_nfc'])}). `decode(encode(s)) != s` for {len(q['roundtrip_fail'])}
  lines, all of them because NFC changed the string: {_show(q['roundtrip_fail'])}.
* olmoe-style byte-level BPE (no normalizer): `decode(encode(s)) == s` for every line except
  {len(o['roundtrip_fail'])} ({_show(o['roundtrip_fail'])}).
* Mixtral SPM: `decode(encode(s)) == s` for every line except {len(sm['roundtrip_fail'])} ({_show(sm['roundtrip_fail'])}).
  Encoding prepends the dummy-prefix `▁` (add_dummy_prefix) and decoding removes exactly one leading space again, so
  leading/trailing spaces, NFD sequences and control characters (byte-fallback `<0xNN>` pieces) all survive.
  SentencePiece splits before each `▁` that precedes a non-space, so n `▁` before a word become pieces covering
  n-1 `▁` followed by `▁word` (after the dummy prefix; e.g. `" lead"` -> `▁`, `▁lead`; `"two  spaces"` -> `▁two`, `▁`, `▁spaces`).
* The `tokenizer.json` that transformers {transformers.__version__} converted from the Mixtral `tokenizer.model`
  (Metaspace pre-tokenizer with prepend_scheme=first and split=false, BPE with byte_fallback, `<unk>`/`<s>`/`</s>` as
  added special tokens) does **not** always agree with SentencePiece: it differs on {len(sm['hf_tokenizer_json_differs'])}
  of {len(corpus)} corpus lines, for two reasons: (1) whitespace runs and leading spaces (no split before `▁`, so
  `"two  spaces"` -> `▁two`, `▁▁`, `sp`, `aces`; and no dummy prefix when the text already starts with a space:
  `" lead"` -> `▁lead`); (2) the added tokens `<s>`, `</s>`, `<unk>` are matched inside raw text (id 1/2/0), whereas
  SentencePiece encodes them as ordinary pieces (`▁<`, `s`, `>`). Differing lines: {_show(sm['hf_tokenizer_json_differs'], 10)}.
  The SentencePiece output (`mixtral_spm.expected.jsonl`) is the reference for `tokenizer.model`; the model-fixture
  prompts were chosen so that both agree.

"""
    with open(os.path.join(tdir, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)


# ----------------------------------------------------------------------------------------------------------------
# Verify
# ----------------------------------------------------------------------------------------------------------------
def load_weights_np(d: str) -> dict:
    """All tensors of a fixture as float64 numpy arrays (reads shards via the index when present)."""
    files, _ = weight_files(d)
    w = {}
    for fn in files:
        for k, v in load_file(os.path.join(d, fn)).items():
            w[k] = v.double().numpy()
    return w


def numpy_forward(d: str, ids: list[int]) -> np.ndarray:
    """Independent float64 re-implementation of the forward pass straight from the files on disk.

    Written from the math in /work/shared/reference/model-families.md, not from transformers; it cross-checks both
    the oracle and the documented semantics (tensor names, fused gate/up order, routing, q/k norms, RoPE pairing).
    """
    cfg = json.load(open(os.path.join(d, "config.json")))
    w = load_weights_np(d)
    mt = cfg["model_type"]
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    theta = cfg["rope_parameters"]["rope_theta"] if "rope_parameters" in cfg else cfg["rope_theta"]
    E = cfg.get("num_local_experts") or cfg.get("num_experts")
    k_top = cfg["num_experts_per_tok"]
    renorm = True if mt == "mixtral" else bool(cfg.get("norm_topk_prob", False))
    T = len(ids)

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def silu(x):
        return x / (1.0 + np.exp(-x))

    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))   # [T, hd]

    def rope(x):  # x [T, heads, hd], half-split pairing (rotate_half)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        rot = np.concatenate([-x2, x1], -1)
        return x * cos[:, None, :] + rot * sin[:, None, :]

    def expert_weights(l, e):
        p = f"model.layers.{l}."
        if p + "mlp.experts.gate_up_proj" in w:                       # fused layout
            gu, dn = w[p + "mlp.experts.gate_up_proj"][e], w[p + "mlp.experts.down_proj"][e]
            I = dn.shape[1]
            return gu[:I], gu[I:], dn
        if p + f"block_sparse_moe.experts.{e}.w1.weight" in w:         # Mixtral legacy
            q = p + f"block_sparse_moe.experts.{e}."
            return w[q + "w1.weight"], w[q + "w3.weight"], w[q + "w2.weight"]
        q = p + f"mlp.experts.{e}."
        return w[q + "gate_proj.weight"], w[q + "up_proj.weight"], w[q + "down_proj.weight"]

    emb = w["model.embed_tokens.weight"]
    h = emb[np.array(ids)]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        a = p + "self_attn."
        x = rms(h, w[p + "input_layernorm.weight"])
        q, k, v = (x @ w[a + n + "_proj.weight"].T + (w[a + n + "_proj.bias"] if a + n + "_proj.bias" in w else 0)
                   for n in "qkv")
        if mt == "olmoe":            # RMSNorm over the whole projection
            q, k = rms(q, w[a + "q_norm.weight"]), rms(k, w[a + "k_norm.weight"])
        q, k, v = q.reshape(T, nh, hd), k.reshape(T, nkv, hd), v.reshape(T, nkv, hd)
        if mt == "qwen3_moe":        # per-head RMSNorm over head_dim
            q, k = rms(q, w[a + "q_norm.weight"]), rms(k, w[a + "k_norm.weight"])
        q, k = rope(q), rope(k)
        g = nh // nkv
        out = np.zeros((T, nh, hd))
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for hh in range(nh):
            sc = q[:, hh] @ k[:, hh // g].T / math.sqrt(hd) + mask
            pr = np.exp(sc - sc.max(-1, keepdims=True))
            pr /= pr.sum(-1, keepdims=True)
            out[:, hh] = pr @ v[:, hh // g]
        h = h + out.reshape(T, nh * hd) @ w[a + "o_proj.weight"].T
        x = rms(h, w[p + "post_attention_layernorm.weight"])
        router = w.get(p + "mlp.gate.weight", w.get(p + "block_sparse_moe.gate.weight"))
        if router is None:           # dense MLP layer (Qwen2-MoE mlp_only_layers)
            m = p + "mlp."
            y = (silu(x @ w[m + "gate_proj.weight"].T) * (x @ w[m + "up_proj.weight"].T)) @ w[m + "down_proj.weight"].T
        else:
            lg = x @ router.T
            pr = np.exp(lg - lg.max(-1, keepdims=True))
            pr /= pr.sum(-1, keepdims=True)                          # softmax over ALL experts, then top-k
            y = np.zeros_like(x)
            for t in range(T):
                top = np.argsort(-pr[t], kind="stable")[:k_top]
                wt = pr[t, top] / (pr[t, top].sum() if renorm else 1.0)
                for e, we in zip(top, wt):
                    wg, wu, wd = expert_weights(l, e)
                    y[t] += we * ((silu(wg @ x[t]) * (wu @ x[t])) @ wd.T)
            if p + "mlp.shared_expert_gate.weight" in w:             # Qwen2-MoE sigmoid-gated shared expert
                m = p + "mlp.shared_expert."
                sh = (silu(x @ w[m + "gate_proj.weight"].T) * (x @ w[m + "up_proj.weight"].T)) @ w[m + "down_proj.weight"].T
                gate = 1.0 / (1.0 + np.exp(-(x @ w[p + "mlp.shared_expert_gate.weight"].T)))
                y = y + gate * sh
        h = h + y
    h = rms(h, w["model.norm.weight"])
    lm = w.get("lm_head.weight", emb if cfg.get("tie_word_embeddings") else None)
    return h @ lm.T


def crosscheck(out_root: str) -> bool:
    ok = True
    for name in FIXTURES:
        d = os.path.join(out_root, "oracles", name)
        ref = load_file(os.path.join(d, "reference.safetensors"))
        worst, i = 0.0, 0
        while f"prompt.{i}" in ref:
            ids = ref[f"prompt.{i}"].tolist()
            lg = numpy_forward(d, ids)
            if f"logits.{i}" in ref:
                diff = np.abs(lg - ref[f"logits.{i}"].double().numpy()).max()
            else:
                diff = np.abs(lg[-1:] - ref[f"last_logits.{i}"].double().numpy()).max()
            worst = max(worst, float(diff))
            i += 1
        good = worst < 1e-4
        ok &= good
        log(f"crosscheck {name}: numpy float64 forward vs reference logits, max abs diff {worst:.2e} "
            f"{'OK' if good else 'FAIL'}")
    return ok


def st_header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))


def weight_files(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        wm = json.load(open(idx))["weight_map"]
        return sorted(set(wm.values())), wm
    return ["model.safetensors"], None


def verify(out_root: str) -> bool:
    ok = True

    def check(cond, msg):
        nonlocal ok
        if not cond:
            ok = False
            log("  FAIL: " + msg)
        return cond

    for name in FIXTURES:
        d = os.path.join(out_root, "oracles", name)
        log(f"verify {name}")
        meta = json.load(open(os.path.join(d, "reference.json")))
        ref = load_file(os.path.join(d, "reference.safetensors"))
        files, wm = weight_files(d)
        names, dtypes = {}, set()
        for fn in files:
            for k, v in st_header(os.path.join(d, fn)).items():
                if k == "__metadata__":
                    continue
                names[k] = v
                dtypes.add(v["dtype"])
        check(dtypes == {meta["weights_dtype"]}, f"weight dtypes {dtypes}")
        if wm is not None:
            check(set(wm) == set(names), "index weight_map does not match shard contents")
            check(len(files) >= 2, "sharded fixture has < 2 shards")
        if name == "mixtral_fused":
            check(wm is not None, "mixtral_fused must be sharded")
            check("model.layers.0.mlp.experts.gate_up_proj" in names and "model.layers.0.mlp.experts.down_proj" in names
                  and "model.layers.0.mlp.gate.weight" in names, "fused names missing")
            check(not any("block_sparse_moe" in k or ".experts.0." in k for k in names), "legacy names present")
        cfg = json.load(open(os.path.join(d, "config.json")))
        if cfg.get("tie_word_embeddings"):
            check("lm_head.weight" not in names, "tied model stores lm_head.weight")

        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        V = model.config.vocab_size
        tok = None
        if meta["tokenizer"] is not None:
            tok = AutoTokenizer.from_pretrained(d)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model")) \
            if meta["tokenizer"] == "spm" else None
        maxdiff = 0.0
        i = 0
        while f"prompt.{i}" in ref:
            ids = ref[f"prompt.{i}"]
            if meta["prompts"] is not None:
                text = meta["prompts"][i]
                hf_ids = tok(text)["input_ids"]
                check(hf_ids == ids.tolist(), f"AutoTokenizer ids differ for prompt {i}: {hf_ids} vs {ids.tolist()}")
                if sp is not None:
                    check([1] + sp.encode(text) == ids.tolist(), f"spm ids differ for prompt {i}")
            x = ids[None]
            with torch.no_grad():
                o = model(input_ids=x, use_cache=False, output_hidden_states=(i == 0), output_router_logits=(i == 0))
                lg = o.logits[0].float()
                g = model.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=gen_config(model))
            if f"logits.{i}" in ref:
                check(ref[f"logits.{i}"].shape == (len(ids), V), "logits shape")
                diff = float((lg - ref[f"logits.{i}"]).abs().max())
            else:
                check(ref[f"last_logits.{i}"].shape == (1, V), "last_logits shape")
                diff = float((lg[-1:] - ref[f"last_logits.{i}"]).abs().max())
            maxdiff = max(maxdiff, diff)
            if i == 0:
                for l, h in enumerate(o.hidden_states):
                    dh = float((h[0].float() - ref[f"hidden.0.{l}"]).abs().max())
                    check(dh < 1e-5, f"hidden.0.{l} differs by {dh}")
                rl = [r for r in (o.router_logits or []) if r is not None]
                keys = sorted((k for k in ref if k.startswith("router_logits.0.")), key=lambda k: int(k.split(".")[-1]))
                check([int(k.split(".")[-1]) for k in keys] == meta["moe_layers"], "router_logits keys vs moe_layers")
                for k, r in zip(keys, rl):
                    dr = float((r.reshape(len(ids), -1).float() - ref[k]).abs().max())
                    check(dr < 1e-5, f"{k} differs by {dr}")
            check(diff < 1e-5, f"prompt {i}: logits max abs diff {diff}")
            greedy = ref[f"greedy.{i}"]
            check(greedy.dtype == torch.int64 and greedy.shape == (N_GEN,), f"greedy.{i} shape {greedy.shape}")
            check(torch.equal(g.sequences[0, len(ids):], greedy), f"prompt {i}: greedy tokens differ")
            if f"decode_logits.{i}" in ref:
                dl = ref[f"decode_logits.{i}"]
                check(dl.shape == (V,), "decode_logits shape")
                check(int(dl.argmax()) == int(greedy[-1]), "argmax(decode_logits) != greedy[-1]")
                check(float((g.logits[-1][0].float() - dl).abs().max()) < 1e-5, "decode_logits differ (cache path)")
            # no-cache recomputation of the whole greedy continuation
            full = torch.cat([ids, greedy[:-1]])[None]
            with torch.no_grad():
                lf = model(input_ids=full, use_cache=False).logits[0, len(ids) - 1:].float()
            check(torch.equal(lf.argmax(-1), greedy), f"prompt {i}: no-cache argmax path differs from greedy")
            if f"decode_logits.{i}" in ref:
                check(float((lf[-1] - ref[f"decode_logits.{i}"]).abs().max()) < 1e-4, "decode_logits vs no-cache")
            i += 1
        check(i >= 4, "fewer than 4 prompts")
        log(f"  {i} prompts, logits max abs diff {maxdiff:.2e}, weights {sorted(dtypes)}, files {files}")

    # tokenizer oracle
    tdir = os.path.join(out_root, "tokenizers")
    corpus = [json.loads(l) for l in open(os.path.join(tdir, "corpus.jsonl"), encoding="utf-8")]
    check(len(corpus) >= 220, "corpus too small")
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out_root, "oracles", "mixtral_spm", "tokenizer.model"))
    exp = [json.loads(l) for l in open(os.path.join(tdir, "mixtral_spm.expected.jsonl"), encoding="utf-8")]
    check(len(exp) == len(corpus), "mixtral_spm expected length")
    bad = sum(1 for s, e in zip(corpus, exp) if sp.encode(s) != e["ids"] or sp.decode(e["ids"]) != e["decoded"])
    check(bad == 0, f"mixtral_spm: {bad} mismatches")
    for fx in ("qwen2_moe_bpe", "olmoe_bpe"):
        tok = Tokenizer.from_file(os.path.join(out_root, "oracles", fx, "tokenizer.json"))
        hf = AutoTokenizer.from_pretrained(os.path.join(out_root, "oracles", fx))
        exp = [json.loads(l) for l in open(os.path.join(tdir, f"{fx}.expected.jsonl"), encoding="utf-8")]
        check(len(exp) == len(corpus), f"{fx} expected length")
        bad = sum(1 for s, e in zip(corpus, exp)
                  if tok.encode(s, add_special_tokens=False).ids != e["ids"]
                  or tok.decode(e["ids"], skip_special_tokens=False) != e["decoded"])
        check(bad == 0, f"{fx}: {bad} mismatches")
        bad_hf = sum(1 for s, e in zip(corpus, exp) if hf.encode(s, add_special_tokens=False) != e["ids"])
        check(bad_hf == 0, f"{fx}: transformers AutoTokenizer disagrees on {bad_hf} lines")
    ok = crosscheck(out_root) and ok
    log("VERIFY " + ("OK" if ok else "FAILED"))
    return ok


# ----------------------------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/data", help="output root (default tests/data)")
    ap.add_argument("--verify", action="store_true", help="only verify existing outputs")
    ap.add_argument("--retrain-tokenizers", action="store_true",
                    help="retrain the byte-level BPE tokenizers even if tokenizer.json already exists")
    ap.add_argument("--only", nargs="*", help="only (re)build these fixtures")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.verify:
        sys.exit(0 if verify(args.out) else 1)

    os.makedirs(os.path.join(args.out, "oracles"), exist_ok=True)
    ctx = {}
    log("tokenizers")
    ctx["qwen2_tok"] = get_bpe_tokenizer(args.out, "qwen2_moe_bpe", "qwen2", args.retrain_tokenizers)
    ctx["olmoe_tok"] = get_bpe_tokenizer(args.out, "olmoe_bpe", "olmoe", args.retrain_tokenizers)
    log(f"  qwen2-style size {ctx['qwen2_tok'].get_vocab_size()}, olmoe-style size {ctx['olmoe_tok'].get_vocab_size()}")
    log("fixtures")
    for name in FIXTURES:
        if args.only and name not in args.only:
            continue
        build_fixture(name, args.out, ctx)
    log("tokenizer oracle")
    build_tokenizer_oracle(args.out, ctx)
    log("done; run with --verify to check")


if __name__ == "__main__":
    main()
