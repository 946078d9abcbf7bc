#!/usr/bin/env python3
"""gguf-types.py FILE: print 'name type' for every tensor of a GGUF file (GGML type names)."""
import struct, sys

NAMES = ["F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
         "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
         "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16"]
SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

f = open(sys.argv[1], "rb")
def rd(fmt):
    return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]
def string():
    return f.read(rd("Q")).decode("utf-8", "replace")
def skip(t):
    if t == 8: string()
    elif t == 9:
        et, n = rd("I"), rd("Q")
        for _ in range(n): skip(et)
    else: f.read(SCALAR[t])

assert f.read(4) == b"GGUF"
rd("I"); n_tensors = rd("Q"); n_kv = rd("Q")
for _ in range(n_kv):
    string(); skip(rd("I"))
for _ in range(n_tensors):
    name = string(); nd = rd("I")
    for _ in range(nd): rd("Q")
    t = rd("I"); rd("Q")
    print(name, NAMES[t] if t < len(NAMES) else t)
