#!/usr/bin/env python3
"""Build the shipped byte-level BPE vocabulary ``cascade_tui/factory/data/bpe2048.json``.

A GPT-2-style tokenizer (ByteLevel pre-tokenizer with the GPT-2 split regex, so llama.cpp's
``tokenizer.ggml.pre = "gpt-2"`` splits text identically) with exactly 2048 tokens:

* ids 0..255: the 256 single-byte tokens, in byte order, spelled in GPT-2's byte-to-unicode form;
* ids 256..2046: one token per merge, in merge (rank) order;
* id 2047: ``<|endoftext|>`` (BOS and EOS, like GPT-2's 50256).

It is trained offline and deterministically on the top-level ``*.py`` files of the running
interpreter's standard library (sorted by name). The result depends on the Python version whose
stdlib it reads; the shipped file records which. Needs the HF ``tokenizers`` package (only here:
the runtime reads the JSON without it).

    python scripts/build_tokenizer.py [--out PATH] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import sysconfig
import time
from pathlib import Path

from cascade_tui.factory.tokenizer import bytes_to_unicode

VOCAB_SIZE = 2048
EOS = "<|endoftext|>"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "cascade_tui" / "factory" / "data" / "bpe2048.json"


def corpus_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in stdlib.glob("*.py") if p.is_file())


def read_corpus(files: list[Path]) -> list[str]:
    docs = []
    for p in files:
        docs.append(p.read_bytes().decode("utf-8", errors="replace"))
    return docs


def train(docs: list[str], n_merges_wanted: int, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    model = json.loads(tok.to_str())["model"]
    merges = model["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    return merges


def build() -> dict:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    files = corpus_files()
    docs = read_corpus(files)
    b2u = bytes_to_unicode()
    byte_tokens = [b2u[b] for b in range(256)]
    n_merges = VOCAB_SIZE - 256 - 1
    # Two different merges may spell the same string; the trainer then adds no new token, so ask
    # for a slightly larger vocabulary until there are enough distinct merged tokens.
    target = VOCAB_SIZE
    for _ in range(20):
        merges = train(docs, n_merges, target)
        tokens = list(byte_tokens)
        seen = set(tokens)
        kept = []
        for m in merges:
            a, b = m.split(" ")
            t = a + b
            if t in seen:
                continue
            seen.add(t)
            tokens.append(t)
            kept.append(m)
            if len(kept) == n_merges:
                break
        if len(kept) == n_merges:
            break
        target += n_merges - len(kept)
    else:  # pragma: no cover
        raise SystemExit("could not reach the vocabulary size")
    # A merge whose result duplicates an earlier token is dropped above; every kept merge's parts
    # must be tokens that exist earlier in the list (true for BPE, checked here anyway).
    index = {t: i for i, t in enumerate(tokens)}
    for r, m in enumerate(kept):
        a, b = m.split(" ")
        assert index[a] < 256 + r and index[b] < 256 + r, m
    tokens.append(EOS)
    assert len(tokens) == VOCAB_SIZE == len(set(tokens))
    total = sum(len(d.encode("utf-8")) for d in docs)
    source = (
        f"HF tokenizers {_tokenizers_version()} BpeTrainer(vocab_size={target}, min_frequency=2, "
        f"ByteLevel GPT-2 regex) on the {len(files)} top-level *.py files of the Python "
        f"{platform.python_version()} stdlib, sorted by name ({total} bytes); re-ordered as "
        f"256 byte tokens, {n_merges} merges in rank order, then {EOS}. "
        f"Built by scripts/build_tokenizer.py"
    )
    return {"tokens": tokens, "merges": kept, "eos": VOCAB_SIZE - 1, "source": source}


def _tokenizers_version() -> str:
    import tokenizers

    return tokenizers.__version__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="build and compare with --out, write nothing")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    data = build()
    text = json.dumps(data, ensure_ascii=False, indent=0) + "\n"
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{'identical' if same else 'DIFFERENT'} ({time.perf_counter() - t0:.1f}s)")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(data['tokens'])} tokens, {time.perf_counter() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
