#!/usr/bin/env python3
"""
gen_pretok_cases.py - write tests/data/pretok_cases.jsonl: random strings and
their pre-token splits under each split pattern, computed with the `regex`
module (an independent regex engine with \\p{..} and look-ahead), for
tests/unit/test-tokenizer.c to compare against the hand-written splitters.

smollm is HF's Digits(individual_digits=True) (every \\p{N} alone) followed by
the GPT-2 pattern on the text between.  The characters drawn are all old
enough that Unicode versions do not disagree on their categories.
Run: python3 tools/gen_pretok_cases.py > tests/data/pretok_cases.jsonl

With --nfc it writes NFC cases instead (random bases, combining marks, Hangul
jamo and precomposed letters, with unicodedata's NFC):
     python3 tools/gen_pretok_cases.py --nfc > tests/data/nfc_cases.jsonl
"""
import json
import random
import sys
import unicodedata

import regex

PATTERNS = {
    'gpt2': r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    'llama3': r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    'qwen2': r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}

ATOMS = (
    list("abcXYZ") + ["the", "Hello", "ÉCOLE", "naïve", "straße", "ǅ", "ʰ"] +
    list("0123456789") + ["²", "½", "١", "Ⅻ", "〇"] +
    [" ", " ", " ", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u2003", "\u2028", "\u0085", "\v", "\f"] +
    ["'", "'s", "'S", "'t", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'d", "'D", "'x", "’s"] +
    list(".,;:!?()[]{}<>-_=+*/\\\"#$%&@^`~|") +
    ["你好", "世界", "こんにちは", "カタカナ", "한국어", "Ωμέγα", "Кирилл", "עברית", "عربي"] +
    ["😀", "👍🏽", "👨\u200d👩", "\u0301", "e\u0301", "\u200b", "\ufeff", "™", "©", "…", "—"]
)


def smollm_split(text):
    out, seg = [], ''
    for ch in text:
        if regex.match(r'\p{N}', ch):
            if seg:
                out += regex.findall(PATTERNS['gpt2'], seg)
                seg = ''
            out.append(ch)
        else:
            seg += ch
    if seg:
        out += regex.findall(PATTERNS['gpt2'], seg)
    return out


NFC_ATOMS = (
    list("aeiouAEIOUnNcCsSzZ ") + ["\u0301", "\u0300", "\u0302", "\u0308", "\u030a",
    "\u0323", "\u0327", "\u031b", "\u0345", "\u05b4", "\u093c", "\u0f71", "\u0f72",
    "\u1100", "\u1161", "\u11a8", "\u1112", "\u1175", "\uac00", "\u212b", "\u2126",
    "\u1e0b", "\u00e9", "\u01fb", "\u0344", "\u0f73", "\u2adc", "\u0b47", "\u0b3e",
    "\u0915", "\u3099", "\u304b", "\u1fbf", "\u03b1", "\u0313", "\u0342"]
)


def nfc_cases():
    rnd = random.Random(99)
    for _ in range(1000):
        text = ''.join(rnd.choice(NFC_ATOMS) for _ in range(rnd.randint(1, 12)))
        print(json.dumps({'text': text, 'nfc': unicodedata.normalize('NFC', text)},
                         ensure_ascii=False))


def main():
    if '--nfc' in sys.argv:
        return nfc_cases()
    rnd = random.Random(1234)
    for pre in ('gpt2', 'llama3', 'qwen2', 'smollm'):
        for _ in range(400):
            text = ''.join(rnd.choice(ATOMS) for _ in range(rnd.randint(1, 24)))
            if pre == 'smollm':
                splits = smollm_split(text)
            else:
                splits = regex.findall(PATTERNS[pre], text)
            assert ''.join(splits) == text
            print(json.dumps({'pre': pre, 'text': text, 'splits': splits}, ensure_ascii=False))


if __name__ == '__main__':
    main()
