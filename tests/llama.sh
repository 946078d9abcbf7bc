#!/bin/bash
# tests/llama.sh SQLM - sqlm against llama.cpp's own tools and library
# (.deps/llama.cpp, built by ../shared/peers/build-llamacpp.sh; `make test`
# builds it when missing, this script skips without it):
#   1. tests/llama/kernels.c: dequantization, activation rounding and dot
#      products of every weight type equal ggml's own, bit for bit;
#   2. a tiny llama-shaped F32 GGUF (sqlm synth --like tiny-k: every width a
#      multiple of 256) quantized by llama-quantize to every type sqlm
#      reads, each file's tensor types checked (the K-quant mixes must use
#      their K-quants), imported into SQLite and run by tests/llama/agree.c
#      beside libllama: greedy ids equal for 16 tokens (near-tie rule: a
#      step where llama.cpp's top-2 margin is below 1e-3 may differ) and the
#      last prompt position's logits within 1e-4 (sqlm's products round as
#      ggml's; what is left is the last bits of attention and norms, about
#      1e-6 here; one activation block rounded differently by them moves a
#      logit by ~0.05, which fails);
#   3. DuckDB (pure SQL): the F32 file gives the same ids and logits within
#      1e-4; the quantized files (types DuckDB cannot hold dequantized at
#      import) run with logits within 0.25 (float32 products, not ggml's
#      int8 ones, for those);
#   4. a GGUF with a tensor of a type sqlm does not read is refused by name.
set -u
SQLM=$(realpath "$1")
NAME=llama
. "$(dirname "$0")/lib.sh"
L=.deps/llama.cpp
if [ ! -x "$L/bin/llama-quantize" ] || [ ! -f "$L/include/llama.h" ]; then
    skipped "all" "no llama.cpp build in $L (make test builds it with ../shared/peers/build-llamacpp.sh)"
    summary; exit
fi
LIB=$(realpath "$L/bin")
CFL=(-O2 -march=native -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude -I"$L/include")
LIBS=(build/libsqlm.a -L"$LIB" -Wl,-rpath,"$LIB" -lsqlite3 -ljansson -lm -ldl -pthread)

# --- 1. kernels against ggml's
if cc "${CFL[@]}" -o "$T/kernels" tests/llama/kernels.c "${LIBS[@]}" -lggml-cpu -lggml-base 2>"$T/err"; then
    "$T/kernels" 300 >"$T/out" 2>&1 && ok || bad "kernels differ from ggml's: $(cat "$T/out")"
    sed 's/^/  /' "$T/out" >&2
else
    bad "tests/llama/kernels.c does not build: $(cat "$T/err")"
fi

# --- 2. llama-quantize's files on SQLite
cc "${CFL[@]}" -o "$T/agree" tests/llama/agree.c "${LIBS[@]}" -lllama -lggml -lggml-base 2>"$T/err" \
    || { bad "tests/llama/agree.c does not build: $(cat "$T/err")"; summary; exit; }
"$SQLM" synth --like tiny-k --type f32 -o "$T/f32.gguf" 2>"$T/err" || { bad "synth: $(cat "$T/err")"; summary; exit; }
PROMPT="1 50 100 7 200 33"
# type, then the tensor types its file must hold
while read -r type want; do
    f="$T/$type.gguf"
    if [ "$type" = F32 ]; then cp "$T/f32.gguf" "$f"
    elif ! "$L/bin/llama-quantize" "$T/f32.gguf" "$f" "$type" >"$T/qlog" 2>&1; then
        bad "llama-quantize $type: $(tail -3 "$T/qlog")"; continue
    fi
    have=$(python3 tests/llama/gguf-types.py "$f" | awk '{print $2}' | sort -u | tr '\n' ' ')
    for w in $want; do
        case " $have" in *" $w "*) ok ;; *) bad "$type: llama-quantize wrote no $w tensor (types: $have)" ;; esac
    done
    if ! "$SQLM" import "$f" -o "$T/$type.db" 2>"$T/err"; then bad "import $type: $(cat "$T/err")"; continue; fi
    if "$T/agree" "$f" "$T/$type.db" 1e-4 16 $PROMPT >"$T/out" 2>&1; then ok; else bad "$type on SQLite: $(cat "$T/out")"; fi
    echo "  $type ($have): $(grep -v '^llama.cpp:\|^sqlm:' "$T/out" | tr '\n' ' ')" >&2
done <<'TYPES'
F32 F32
BF16 BF16
Q8_0 Q8_0
Q4_0 Q4_0 Q6_K
Q4_1 Q4_1
Q5_0 Q5_0
Q5_1 Q5_1
IQ4_NL IQ4_NL
Q2_K Q2_K Q3_K
Q3_K_M Q3_K Q4_K Q5_K
Q4_K_M Q4_K Q6_K
Q5_K_M Q5_K Q6_K
Q6_K Q6_K
TYPES

# sqlm synth's own Q4_K_M mix and Q6_K (plain rounding, not llama-quantize's):
# the same tensor types as llama-quantize's files, and llama.cpp agrees
for type in q4_k_m q6_k; do
    f="$T/synth-$type.gguf"
    "$SQLM" synth --like tiny-k --type $type -o "$f" 2>"$T/err" || { bad "synth $type: $(cat "$T/err")"; continue; }
    want=$(python3 tests/llama/gguf-types.py "$T/${type^^}.gguf" | awk '{print $2}' | sort | uniq -c | tr -s ' ')
    have=$(python3 tests/llama/gguf-types.py "$f" | awk '{print $2}' | sort | uniq -c | tr -s ' ')
    [ "$have" = "$want" ] && ok || bad "synth $type: tensor types [$have], llama-quantize's [$want]"
    if ! "$SQLM" import "$f" -o "$T/synth-$type.db" 2>"$T/err"; then bad "import synth $type: $(cat "$T/err")"; continue; fi
    "$T/agree" "$f" "$T/synth-$type.db" 1e-4 16 $PROMPT >"$T/out" 2>&1 && ok || bad "synth $type on SQLite: $(cat "$T/out")"
    echo "  synth $type: $(grep -v '^llama.cpp:\|^sqlm:' "$T/out" | tr '\n' ' ')" >&2
done

# --- 3. DuckDB, pure SQL
if "$SQLM" import "$T/F32.gguf" -o "$T/F32.duck" --engine duckdb 2>"$T/err"; then
    "$T/agree" "$T/F32.gguf" "$T/F32.duck" 1e-4 16 $PROMPT >"$T/out" 2>&1 && ok || bad "F32 on DuckDB: $(cat "$T/out")"
    echo "  F32 on DuckDB: $(grep -v '^llama.cpp:\|^sqlm:' "$T/out" | tr '\n' ' ')" >&2
    # Q5_0 and IQ4_NL are stored as int8 blocks with a Q8_0 activation, the
    # files' Q6_K head as F32: the head's float32 product is what differs
    for type in Q4_K_M Q6_K Q5_1 BF16 Q5_0 IQ4_NL; do
        [ -f "$T/$type.gguf" ] || continue
        if ! "$SQLM" import "$T/$type.gguf" -o "$T/$type.duck" --engine duckdb 2>"$T/err"; then
            bad "import $type on DuckDB: $(cat "$T/err")"; continue
        fi
        # ids may part where float32 products and ggml's int8 ones disagree:
        # only the logits' bound is checked (agree's exit status is not)
        "$T/agree" "$T/$type.gguf" "$T/$type.duck" 0.25 16 $PROMPT >"$T/out" 2>&1
        d=$(sed -n 's/^max |logit difference|: \([^ ]*\) at the last prompt position.*/\1/p' "$T/out")
        if [ -n "$d" ] && python3 -c "import sys; sys.exit(0 if float('$d') <= 0.25 else 1)"; then ok
        else bad "$type on DuckDB: $(cat "$T/out")"; fi
        echo "  $type on DuckDB: $(grep -v '^llama.cpp:\|^sqlm:' "$T/out" | grep -v FAIL | tr '\n' ' ')" >&2
    done
elif grep -q "libduckdb" "$T/err"; then
    skipped "DuckDB" "$(head -1 "$T/err")"
else
    bad "import F32 on DuckDB: $(cat "$T/err")"
fi

# --- 4. a type sqlm does not read: one tensor's type set to IQ2_XXS (16)
python3 - "$T/F32.gguf" "$T/iq2.gguf" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
name = b"blk.0.attn_q.weight"
i = b.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
nd = struct.unpack_from("<I", b, i)[0]
struct.pack_into("<I", b, i + 4 + 8 * nd, 16)
open(sys.argv[2], "wb").write(b)
PY
expect_error "IQ2_XXS tensor" "tensor blk.0.attn_q.weight: tensor type IQ2_XXS (16) is not supported; supported types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K" \
    "$SQLM" import "$T/iq2.gguf" -o "$T/iq2.db"
summary
