#!/usr/bin/env python3
"""Trains ferry's bundled quality yardstick: a small Mixtral-family MoE on English prose available offline.

    apt-get install python3-doc          # the text: Python's documentation sources (reStructuredText)
    python3 -m venv .venv && .venv/bin/pip install -r tools/requirements-train.txt
    .venv/bin/python tools/train_tiny_moe.py --out tools/data/tiny_moe

What it writes (a Hugging Face model directory ferry loads like any other):
  config.json, generation_config.json   MixtralForCausalLM, bf16 weights, tied embeddings
  model.safetensors                     the weights, HF tensor names, bf16
  tokenizer.model, tokenizer_config.json  its own SentencePiece BPE vocabulary (byte fallback, Llama-style)
  heldout.txt                           documents never trained on (one per line), for perplexity
  train_log.json                        the loss curve, held-out perplexity, corpus and timing facts
  trainer_reference.json                the trainer's greedy tokens and top logits on a held-out prompt

The model is Mixtral's forward exactly (RMSNorm, rotate-half RoPE, GQA causal attention, softmax router with
top-k renormalised, SwiGLU experts), so ferry's reference and cpu targets run it as they run Mixtral. Training
computes every expert densely and weights the top-k (simple and exact for a model this small), with the
Switch load-balancing loss so all experts learn. Deterministic for a given seed and corpus.
"""
import argparse
import json
import math
import os
import random
import re
import struct
import sys
import time

import numpy as np

DOC_SOURCES = "/usr/share/doc/python3.11/html/_sources"


# ---------------------------------------------------------------- corpus

# Directives whose body is code, markup or links, not prose (their bodies are skipped; the others, such as
# function, class, note, keep theirs).
SKIPPED_DIRECTIVES = {"code-block", "sourcecode", "code", "highlight", "literalinclude", "doctest", "testcode",
                      "testoutput", "testsetup", "testcleanup", "productionlist", "toctree", "index", "image",
                      "figure", "table", "csv-table", "list-table", "raw", "include", "only", "seealso",
                      "opcode", "cmdoption", "option", "envvar", "audit-event", "availability", "impl-detail",
                      "program", "tabularcolumns", "sectionauthor", "moduleauthor", "rubric", "glossary"}


def prose_paragraphs(path):
    """The prose paragraphs of one reST file: text of paragraphs, list items and directive bodies; no code,
    literal blocks, doctests, tables, titles or directive arguments."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    paragraphs, current = [], []
    skip_deeper = None  # skip the lines indented more than this (a literal block or a skipped directive)
    skip_to_blank = False  # a doctest block runs to the next blank line

    def flush():
        if current:
            paragraphs.append(" ".join(current))
            current.clear()

    for line in lines + [""]:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_to_blank:
            if stripped:
                continue
            skip_to_blank = False
        if skip_deeper is not None:
            if not stripped or indent > skip_deeper:
                continue
            skip_deeper = None
        if not stripped:
            flush()
            continue
        if stripped.startswith(".."):
            flush()
            m = re.match(r"\.\.\s+([\w:-]+)::", stripped)
            if not m or m.group(1).split(":")[-1] in SKIPPED_DIRECTIVES:
                skip_deeper = indent  # a comment, a target or a skipped directive, with its body
            continue
        if stripped.startswith(">>>"):
            flush()
            skip_to_blank = True
            continue
        if re.fullmatch(r"[=\-~^\"'`#*+.]{3,}", stripped):  # a title's underline (or overline)
            current.clear()
            continue
        if stripped.startswith(("|", "+-", ":")) or re.fullmatch(r"[= ]+", stripped):
            flush()  # tables, field lists and directive options
            continue
        bullet = re.match(r"(\*|-|#\.|\d+\.)\s+(.*)", stripped)
        if bullet:
            flush()
            stripped = bullet.group(2)
        current.append(stripped)
        if stripped.endswith("::"):  # a literal block follows
            current[-1] = stripped[:-1] if not stripped.endswith(" ::") else stripped[:-3]
            flush()
            skip_deeper = indent
    out = []
    for p in paragraphs:
        # inline markup: :role:`text <target>` -> text, ``code`` -> code, *emphasis* -> emphasis
        p = re.sub(r":[a-zA-Z:]+:`[~!]?([^`<]*?)\s*(<[^`]*>)?`", r"\1", p)
        p = re.sub(r"``([^`]*)``", r"\1", p)
        p = re.sub(r"`([^`<]*?)\s*(<[^`]*>)?`_*", r"\1", p)
        p = re.sub(r"\*\*?([^*]+)\*\*?", r"\1", p)
        p = re.sub(r"\s+", " ", p).strip()
        words = p.split()
        # sentences of words, not tables or fragments
        if len(words) >= 8 and p[-1] in ".?!" and sum(w.isalpha() for w in words) >= 0.6 * len(words):
            out.append(p)
    return out


def read_corpus(root):
    if not os.path.isdir(root):
        sys.exit(f"train_tiny_moe: {root} not found: install Debian's python3-doc (apt-get install python3-doc) "
                 f"or pass --text-dir with another tree of .rst.txt/.txt files")
    files = []
    for d, _, names in os.walk(root):
        files += [os.path.join(d, n) for n in names if n.endswith((".rst.txt", ".txt"))]
    files.sort()
    return files, [ps for ps in (prose_paragraphs(f) for f in files) if ps]  # per file, its paragraphs


# ---------------------------------------------------------------- tokenizer

def train_tokenizer(train_text_path, prefix, vocab):
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(
        input=train_text_path, model_prefix=prefix, vocab_size=vocab, model_type="bpe", byte_fallback=True,
        split_digits=True, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, character_coverage=0.9995,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=2, input_sentence_size=2_000_000,
        shuffle_input_sentence=False, minloglevel=2)
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


# ---------------------------------------------------------------- model (Mixtral's forward)

def init_params(cfg, seed):
    rng = np.random.default_rng(seed)
    D, F, V, E = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_local_experts"]
    H, Hk = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    Dh = D // H
    std = 0.02
    out_std = std / math.sqrt(2 * cfg["num_hidden_layers"])  # residual branches scaled (GPT-2)

    def normal(shape, s=std):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    p = {"model.embed_tokens.weight": normal((V, D)), "model.norm.weight": np.ones(D, np.float32)}
    for l in range(cfg["num_hidden_layers"]):
        a = f"model.layers.{l}."
        p[a + "input_layernorm.weight"] = np.ones(D, np.float32)
        p[a + "post_attention_layernorm.weight"] = np.ones(D, np.float32)
        p[a + "self_attn.q_proj.weight"] = normal((H * Dh, D))
        p[a + "self_attn.k_proj.weight"] = normal((Hk * Dh, D))
        p[a + "self_attn.v_proj.weight"] = normal((Hk * Dh, D))
        p[a + "self_attn.o_proj.weight"] = normal((D, H * Dh), out_std)
        p[a + "block_sparse_moe.gate.weight"] = normal((E, D))
        p[a + "block_sparse_moe.w1"] = normal((E, F, D))  # stacked for training; saved per expert
        p[a + "block_sparse_moe.w3"] = normal((E, F, D))
        p[a + "block_sparse_moe.w2"] = normal((E, D, F), out_std)
    return p


def make_forward(cfg):
    import jax
    import jax.numpy as jnp
    D, H, Hk = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    Dh, K, E = D // H, cfg["num_experts_per_tok"], cfg["num_local_experts"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_parameters"]["rope_theta"]

    def rms(x, w):
        return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * w

    def rope(x, cos, sin):  # x [B, T, h, Dh]; rotate_half as transformers' Llama/Mixtral
        x1, x2 = x[..., : Dh // 2], x[..., Dh // 2:]
        return x * cos + jnp.concatenate([-x2, x1], axis=-1) * sin

    def forward(p, tokens):
        B, T = tokens.shape
        inv = 1.0 / (theta ** (jnp.arange(0, Dh, 2, dtype=jnp.float32) / Dh))
        ang = jnp.arange(T, dtype=jnp.float32)[:, None] * inv[None, :]
        ang = jnp.concatenate([ang, ang], axis=-1)
        cos, sin = jnp.cos(ang)[None, :, None, :], jnp.sin(ang)[None, :, None, :]
        mask = jnp.tril(jnp.ones((T, T), bool))
        x = p["model.embed_tokens.weight"][tokens]
        aux = 0.0
        for l in range(cfg["num_hidden_layers"]):
            a = f"model.layers.{l}."
            h = rms(x, p[a + "input_layernorm.weight"])
            q = (h @ p[a + "self_attn.q_proj.weight"].T).reshape(B, T, H, Dh)
            k = (h @ p[a + "self_attn.k_proj.weight"].T).reshape(B, T, Hk, Dh)
            v = (h @ p[a + "self_attn.v_proj.weight"].T).reshape(B, T, Hk, Dh)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            k = jnp.repeat(k, H // Hk, axis=2)
            v = jnp.repeat(v, H // Hk, axis=2)
            s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(Dh)
            s = jnp.where(mask[None, None], s, -1e30)
            att = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, axis=-1), v).reshape(B, T, H * Dh)
            x = x + att @ p[a + "self_attn.o_proj.weight"].T
            h = rms(x, p[a + "post_attention_layernorm.weight"])
            logits = h @ p[a + "block_sparse_moe.gate.weight"].T  # [B, T, E]
            probs = jax.nn.softmax(logits, axis=-1)
            top_w, top_i = jax.lax.top_k(probs, K)
            top_w = top_w / jnp.sum(top_w, axis=-1, keepdims=True)
            combine = jnp.sum(jax.nn.one_hot(top_i, E) * top_w[..., None], axis=-2)  # [B, T, E]
            g = jnp.einsum("btd,efd->btef", h, p[a + "block_sparse_moe.w1"])
            u = jnp.einsum("btd,efd->btef", h, p[a + "block_sparse_moe.w3"])
            y = jnp.einsum("btef,edf->bted", jax.nn.silu(g) * u, p[a + "block_sparse_moe.w2"])
            x = x + jnp.einsum("bte,bted->btd", combine, y)
            # Switch load balancing: E * sum_e (share of assignments to e) * (mean router prob of e)
            share = jnp.mean(jnp.sum(jax.nn.one_hot(top_i, E), axis=-2), axis=(0, 1)) / K
            aux = aux + E * jnp.sum(share * jnp.mean(probs, axis=(0, 1)))
        x = rms(x, p["model.norm.weight"])
        return x @ p["model.embed_tokens.weight"].T, aux / cfg["num_hidden_layers"]

    return forward


# ---------------------------------------------------------------- output

def to_bf16_bits(a):
    """float32 -> bf16 bit patterns, round to nearest even (what torch's .to(bfloat16) does)."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def hf_tensors(p, cfg):
    """HF Mixtral names, experts unstacked; the stacked arrays are the training layout."""
    out = {}
    for name, a in p.items():
        m = re.fullmatch(r"(model\.layers\.\d+\.block_sparse_moe)\.(w[123])", name)
        if m:
            for e in range(a.shape[0]):
                out[f"{m.group(1)}.experts.{e}.{m.group(2)}.weight"] = a[e]
        else:
            out[name] = a
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        bits = to_bf16_bits(tensors[name])
        data = bits.tobytes()
        header[name] = {"dtype": "BF16", "shape": list(bits.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------- training

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--text-dir", default=DOC_SOURCES, help="tree of .rst.txt/.txt files (default: python3-doc)")
    ap.add_argument("--steps", type=int, default=1100)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--expert-width", type=int, default=256)
    ap.add_argument("--aux-coef", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp

    t_start = time.time()
    os.makedirs(args.out, exist_ok=True)
    # A document is one file's prose, its paragraphs in order: the model learns to go on after a sentence
    # (EOS only at a document's end). Whole documents are held out (2% of them).
    files, docs = read_corpus(args.text_dir)
    random.Random(args.seed).shuffle(docs)
    n_held = max(5, len(docs) // 50)
    held_docs, train_docs = docs[:n_held], docs[n_held:]
    held = [" ".join(d) for d in held_docs]
    train = [" ".join(d) for d in train_docs]
    train_path = os.path.join(args.out, "train_text.tmp")
    with open(train_path, "w") as f:  # the tokenizer trains on paragraphs, one per line
        f.write("\n".join(p for d in train_docs for p in d) + "\n")
    with open(os.path.join(args.out, "heldout.txt"), "w") as f:  # one held-out document per line
        f.write("\n".join(held) + "\n")
    print(f"corpus: {len(files)} files, {len(train)} training and {len(held)} held-out documents, "
          f"{sum(map(len, train)) / 1e6:.1f} MB of training text", flush=True)

    sp = train_tokenizer(train_path, os.path.join(args.out, "tokenizer"), args.vocab)
    os.remove(train_path)
    os.remove(os.path.join(args.out, "tokenizer.vocab"))

    def stream(texts):
        ids = []
        for t in texts:
            ids += [1] + sp.encode(t) + [2]
        return np.asarray(ids, np.int32)

    data, held_ids = stream(train), stream(held)
    print(f"tokens: {len(data)} training, {len(held_ids)} held out", flush=True)

    cfg = {
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "dtype": "bfloat16",
        "hidden_size": args.hidden, "intermediate_size": args.expert_width, "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads, "num_key_value_heads": args.kv_heads, "head_dim": args.hidden // args.heads,
        "num_local_experts": args.experts, "num_experts_per_tok": args.top_k, "vocab_size": args.vocab,
        "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "hidden_act": "silu", "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
        "attention_dropout": 0.0, "sliding_window": None, "router_jitter_noise": 0.0, "use_cache": True,
        "output_router_logits": False, "router_aux_loss_coef": args.aux_coef,
    }
    forward = make_forward(cfg)
    params = {k: jnp.asarray(v) for k, v in init_params(cfg, args.seed).items()}
    n_params = sum(int(np.prod(v.shape)) for v in params.values())
    print(f"model: {n_params / 1e6:.2f} M parameters", flush=True)

    def loss_fn(p, batch):
        logits, aux = forward(p, batch[:, :-1])
        logp = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.mean(jnp.take_along_axis(logp, batch[:, 1:, None], axis=-1))
        return nll + args.aux_coef * aux, nll

    b1, b2, wd, warm = 0.9, 0.95, 0.1, 100

    @jax.jit
    def step(p, m, v, batch, t):
        (loss, nll), g = jax.value_and_grad(loss_fn, has_aux=True)(p, batch)
        gn = jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(g)))
        scale = jnp.minimum(1.0, 1.0 / (gn + 1e-6))  # clip the global norm at 1
        lr = args.lr * jnp.minimum(1.0, (t + 1) / warm) * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(t / args.steps, 1.0)))
        new_p, new_m, new_v = {}, {}, {}
        for k in p:
            gk = g[k] * scale
            new_m[k] = b1 * m[k] + (1 - b1) * gk
            new_v[k] = b2 * v[k] + (1 - b2) * gk * gk
            mh = new_m[k] / (1 - b1 ** (t + 1))
            vh = new_v[k] / (1 - b2 ** (t + 1))
            decay = wd if p[k].ndim >= 2 else 0.0  # no decay on norms
            new_p[k] = p[k] - lr * (mh / (jnp.sqrt(vh) + 1e-8) + decay * p[k])
        return new_p, new_m, new_v, nll

    eval_nll = jax.jit(lambda p, batch: loss_fn(p, batch)[1])

    def heldout_ppl(p):
        T = args.seq + 1
        n = (len(held_ids) - 1) // args.seq
        windows = np.stack([held_ids[i * args.seq: i * args.seq + T] for i in range(n) if i * args.seq + T <= len(held_ids)])
        total = 0.0
        for i in range(0, len(windows), args.batch):
            chunk = windows[i: i + args.batch]
            total += float(eval_nll(p, jnp.asarray(chunk))) * len(chunk)
        return math.exp(total / len(windows))

    m = {k: jnp.zeros_like(v) for k, v in params.items()}
    v = {k: jnp.zeros_like(x) for k, x in params.items()}
    rng = np.random.default_rng(args.seed)
    curve = []
    t0 = time.time()
    for t in range(args.steps):
        starts = rng.integers(0, len(data) - args.seq - 1, args.batch)
        batch = np.stack([data[s: s + args.seq + 1] for s in starts])
        params, m, v, nll = step(params, m, v, jnp.asarray(batch), t)
        if t % 100 == 0 or t == args.steps - 1:
            nll = float(nll)
            curve.append({"step": t, "train_nll": nll})
            rate = (t + 1) * args.batch * args.seq / (time.time() - t0)
            print(f"step {t:5d}  nll {nll:.3f}  {rate:,.0f} tokens/s  {time.time() - t_start:.0f} s", flush=True)
    train_seconds = time.time() - t0

    final = {k: np.asarray(x) for k, x in params.items()}
    ppl_f32 = heldout_ppl(params)
    rounded = {k: jnp.asarray(from_bf16_bits(to_bf16_bits(x))) for k, x in final.items()}
    ppl_bf16 = heldout_ppl(rounded)
    print(f"held-out perplexity {ppl_f32:.2f} (fp32 weights), {ppl_bf16:.2f} (bf16 weights)", flush=True)

    # What ferry must reproduce: the trainer's own forward over the shipped (bf16) weights, greedy from the
    # start of the first held-out document (tests/unit/tiny_moe_test.cpp).
    first = next(t for t in held if len(sp.encode(t)) >= 23)
    prompt = [1] + sp.encode(first)[:23]
    tokens = list(prompt)
    for _ in range(16):
        logits, _ = forward(rounded, jnp.asarray([tokens]))
        tokens.append(int(jnp.argmax(logits[0, -1])))
    logits, _ = forward(rounded, jnp.asarray([prompt]))
    last = np.asarray(logits[0, -1])
    top = np.argsort(-last)[:8]
    with open(os.path.join(args.out, "trainer_reference.json"), "w") as f:
        json.dump({"prompt_ids": prompt, "greedy_ids": tokens[len(prompt):],
                   "last_logits_top": [[int(i), float(last[i])] for i in top]}, f, indent=1)

    write_safetensors(os.path.join(args.out, "model.safetensors"), hf_tensors(final, cfg))
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2}, f, indent=2)
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                   "add_bos_token": True, "add_eos_token": False, "clean_up_tokenization_spaces": False,
                   "model_max_length": 512}, f, indent=2)
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump({"corpus": {"dir": args.text_dir, "files": len(files), "train_documents": len(train),
                              "heldout_documents": len(held), "train_tokens": int(len(data)),
                              "heldout_tokens": int(len(held_ids))},
                   "args": vars(args), "parameters": n_params, "train_seconds": train_seconds,
                   "total_seconds": time.time() - t_start, "heldout_perplexity_fp32": ppl_f32,
                   "heldout_perplexity_bf16": ppl_bf16, "curve": curve}, f, indent=2)
    print(f"wrote {args.out} in {time.time() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
