#!/usr/bin/env python3
"""Write the seed inputs of the model-file fuzzers (tests/fuzz/modelfuzz.h):
tiny valid models in each format, a few KB each, into tests/fuzz/corpus-NAME/.

    tests/fuzz/seeds.py [SQLM]     SQLM: the command line, for the model
                                   database seeds (default ./sqlm)

An input of the formats of several files is, for each file but the last,
u32 n (little endian) and n bytes of it, then the last file:
    safetensors  config.json, tokenizer.json, model.safetensors
    llama2c      tokenizer.bin, model.bin
gguf and modeldb inputs are the file itself.  Weights are random but fixed
(seeded), so the seeds are the same on every run."""
import json
import os
import random
import sqlite3
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(27)

# <unk> <s> </s>, then a few SentencePiece pieces
PIECES = ["<unk>", "<s>", "</s>", "\u2581", "a", "b", "\u2581a", "ab"]
ATTR = [2, 3, 3, 1, 1, 1, 1, 1]   # GGUF token types: unknown, control, normal


def f32(n, amp=0.3):
    return [rng.uniform(-amp, amp) for _ in range(n)]


def norm(n):
    return [1.0 + rng.uniform(-0.1, 0.1) for _ in range(n)]


def shapes(dim, hidden, n_head, n_kv, vocab):
    """GGUF names and (ne0, ne1) of a one-layer Llama."""
    kv = dim // n_head * n_kv
    return [
        ("token_embd.weight", (dim, vocab)),
        ("output_norm.weight", (dim,)),
        ("output.weight", (dim, vocab)),
        ("blk.0.attn_norm.weight", (dim,)),
        ("blk.0.attn_q.weight", (dim, dim)),
        ("blk.0.attn_k.weight", (dim, kv)),
        ("blk.0.attn_v.weight", (dim, kv)),
        ("blk.0.attn_output.weight", (dim, dim)),
        ("blk.0.ffn_norm.weight", (dim,)),
        ("blk.0.ffn_gate.weight", (dim, hidden)),
        ("blk.0.ffn_up.weight", (dim, hidden)),
        ("blk.0.ffn_down.weight", (hidden, dim)),
    ]


def values(name, ne):
    n = 1
    for d in ne:
        n *= d
    return norm(n) if "norm" in name else f32(n)


# ------------------------------------------------------------------ GGUF

def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gkv(key, typ, val):
    out = gstr(key) + struct.pack("<I", typ)
    if typ == 4:
        out += struct.pack("<I", val)
    elif typ == 5:
        out += struct.pack("<i", val)
    elif typ == 6:
        out += struct.pack("<f", val)
    elif typ == 7:
        out += struct.pack("<B", val)
    elif typ == 8:
        out += gstr(val)
    elif typ == 9:
        et, items = val
        out += struct.pack("<IQ", et, len(items))
        for x in items:
            out += gstr(x) if et == 8 else struct.pack("<f" if et == 6 else "<i", x)
    return out


def q8_0(v):
    out = b""
    for i in range(0, len(v), 32):
        blk = v[i:i + 32]
        amax = max(abs(x) for x in blk)
        d = amax / 127 if amax else 0.0
        q = [int(round(x / d)) if d else 0 for x in blk]
        out += struct.pack("<e", d) + struct.pack("<32b", *q)
    return out


def gguf(dim, hidden, n_head, n_kv, quant):
    vocab = len(PIECES)
    kvs = [
        gkv("general.architecture", 8, "llama"),
        gkv("llama.embedding_length", 4, dim),
        gkv("llama.feed_forward_length", 4, hidden),
        gkv("llama.block_count", 4, 1),
        gkv("llama.attention.head_count", 4, n_head),
        gkv("llama.attention.head_count_kv", 4, n_kv),
        gkv("llama.context_length", 4, 32),
        gkv("llama.attention.layer_norm_rms_epsilon", 6, 1e-5),
        gkv("llama.rope.freq_base", 6, 10000.0),
        gkv("tokenizer.ggml.model", 8, "llama"),
        gkv("tokenizer.ggml.tokens", 9, (8, PIECES)),
        gkv("tokenizer.ggml.scores", 9, (6, [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -1.5, -2.5])),
        gkv("tokenizer.ggml.token_type", 9, (5, ATTR)),
        gkv("tokenizer.ggml.bos_token_id", 4, 1),
        gkv("tokenizer.ggml.eos_token_id", 4, 2),
        gkv("tokenizer.ggml.unknown_token_id", 4, 0),
    ]
    infos, data = b"", b""
    ts = shapes(dim, hidden, n_head, n_kv, vocab)
    for name, ne in ts:
        v = values(name, ne)
        if quant and len(ne) == 2:
            typ, blob = 8, q8_0(v)
        else:
            typ, blob = 0, struct.pack("<%df" % len(v), *v)
        data += b"\0" * (-len(data) % 32)
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", typ, len(data))
        data += blob
    head = b"GGUF" + struct.pack("<IQQ", 3, len(ts), len(kvs)) + b"".join(kvs) + infos
    return head + b"\0" * (-len(head) % 32) + data


# ----------------------------------------------------------- safetensors

HF = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.0.attn_norm.weight": "model.layers.0.input_layernorm.weight",
    "blk.0.attn_q.weight": "model.layers.0.self_attn.q_proj.weight",
    "blk.0.attn_k.weight": "model.layers.0.self_attn.k_proj.weight",
    "blk.0.attn_v.weight": "model.layers.0.self_attn.v_proj.weight",
    "blk.0.attn_output.weight": "model.layers.0.self_attn.o_proj.weight",
    "blk.0.ffn_norm.weight": "model.layers.0.post_attention_layernorm.weight",
    "blk.0.ffn_gate.weight": "model.layers.0.mlp.gate_proj.weight",
    "blk.0.ffn_up.weight": "model.layers.0.mlp.up_proj.weight",
    "blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight",
}


def safetensors(dim, hidden, n_head, n_kv, tied, f16):
    vocab = len(PIECES)
    cfg = {"model_type": "llama", "hidden_size": dim, "intermediate_size": hidden,
           "num_hidden_layers": 1, "num_attention_heads": n_head, "num_key_value_heads": n_kv,
           "vocab_size": vocab, "max_position_embeddings": 32, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "tie_word_embeddings": tied}
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, ne in shapes(dim, hidden, n_head, n_kv, vocab):
        if tied and name == "output.weight":
            continue
        v = values(name, ne)
        blob = struct.pack("<%d%s" % (len(v), "e" if f16 else "f"), *v)
        header[HF[name]] = {"dtype": "F16" if f16 else "F32", "shape": list(reversed(ne)),
                            "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tok = {"version": "1.0",
           "added_tokens": [{"id": i, "content": PIECES[i], "special": True} for i in range(3)],
           "normalizer": {"type": "Sequence", "normalizers": [
               {"type": "Prepend", "prepend": "\u2581"},
               {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
           "pre_tokenizer": None,
           "post_processor": {"type": "TemplateProcessing",
                              "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                         {"Sequence": {"id": "A", "type_id": 0}}]},
           "decoder": {"type": "Sequence", "decoders": [
               {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
               {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
           "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": False,
                     "vocab": {p: i for i, p in enumerate(PIECES)},
                     "merges": ["\u2581 a", "a b"]}}
    return (json.dumps(cfg).encode(), json.dumps(tok, ensure_ascii=False).encode(),
            struct.pack("<Q", len(h)) + h + data)


# --------------------------------------------------------------- llama2.c

def llama2c(dim, hidden, n_head, n_kv, tied):
    vocab, seq = len(PIECES), 16
    hd = dim // n_head
    kv = hd * n_kv
    head = struct.pack("<7i", dim, hidden, 1, n_head, n_kv, vocab if tied else -vocab, seq)
    w = f32(vocab * dim) + norm(dim) + f32(dim * dim) + f32(kv * dim) * 1 + f32(kv * dim) + f32(dim * dim)
    w += norm(dim) + f32(hidden * dim) + f32(dim * hidden) + f32(hidden * dim) + norm(dim)
    w += [0.0] * (seq * hd)          # freq_cis_real, freq_cis_imag (unused)
    if not tied:
        w += f32(vocab * dim)
    model = head + struct.pack("<%df" % len(w), *w)
    tok = struct.pack("<i", max(len(p.encode()) for p in PIECES))
    for i, p in enumerate(PIECES):
        b = (" " + p[1:] if p.startswith("\u2581") else p).encode() if i > 2 else p.encode()
        tok += struct.pack("<fi", -float(i), len(b)) + b
    return tok, model


def files(*parts):
    return b"".join(struct.pack("<I", len(p)) + p for p in parts[:-1]) + parts[-1]


def put(name, seed, data):
    d = os.path.join(HERE, "corpus-" + name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + seed), "wb") as f:
        f.write(data)


def main():
    sqlm = sys.argv[1] if len(sys.argv) > 1 else "./sqlm"
    g_f32 = gguf(8, 16, 2, 1, False)
    put("gguf", "f32", g_f32)
    put("gguf", "q8_0", gguf(32, 32, 2, 1, True))
    put("safetensors", "f32", files(*safetensors(8, 16, 2, 1, False, False)))
    put("safetensors", "f16-tied", files(*safetensors(8, 16, 2, 2, True, True)))
    put("llama2c", "untied", files(*llama2c(8, 16, 2, 1, False)))
    put("llama2c", "tied", files(*llama2c(8, 16, 2, 2, True)))
    # the model database of the F32 GGUF, in 256-byte tiles on 512-byte
    # pages (24 KB; the tiles still fit a page, so they are read in place)
    with tempfile.TemporaryDirectory() as t:
        src, out = os.path.join(t, "m.gguf"), os.path.join(t, "m.db")
        with open(src, "wb") as f:
            f.write(g_f32)
        subprocess.run([sqlm, "import", src, "-o", out, "--tile-bytes", "256"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        db = sqlite3.connect(out)
        db.execute("PRAGMA page_size = 512")
        db.execute("VACUUM")
        db.close()
        with open(out, "rb") as f:
            put("modeldb", "f32", f.read())


if __name__ == "__main__":
    main()
