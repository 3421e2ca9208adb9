"""The byte-level BPE vocabulary shared by every generated model (targets and drafters).

The vocabulary is a file shipped with the package (``data/bpe2048.json``, made by
``scripts/build_tokenizer.py``): 2048 GPT-2-style tokens -- ids 0..255 are the single bytes,
then one token per merge in rank order, then ``<|endoftext|>`` (BOS and EOS). Tokens are spelled
in GPT-2's byte-to-unicode form, exactly as GGUF's ``tokenizer.ggml.tokens`` expects for
``tokenizer.ggml.model = "gpt2"``.

Reading it needs nothing beyond the standard library. :func:`encode_fast` (for training scripts
that tokenize a corpus) imports the HF ``tokenizers`` package lazily; nothing else here does.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

EOS_TEXT = "<|endoftext|>"
_DATA_FILE = "bpe2048.json"


@functools.lru_cache(maxsize=1)
def _byte_maps() -> tuple[dict[int, str], dict[str, int]]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    b2u = {b: chr(c) for b, c in zip(bs, cs)}
    return b2u, {u: b for b, u in b2u.items()}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (a copy)."""
    return dict(_byte_maps()[0])


@dataclass(frozen=True)
class BPEVocab:
    """A GPT-2 byte-level BPE vocabulary.

    ``tokens[i]``: token ``i`` in byte-to-unicode form; ``merges``: ``"left right"`` strings in
    rank order; ``eos_id`` / ``bos_id``: ids of the end/begin-of-sequence token (the same
    ``<|endoftext|>`` in the default vocabulary). ``special_ids``: control tokens (not text).
    """

    tokens: tuple[str, ...]
    merges: tuple[str, ...]
    eos_id: int
    bos_id: int
    special_ids: tuple[int, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        object.__setattr__(self, "merges", tuple(self.merges))
        specials = tuple(sorted(set(self.special_ids) | {self.eos_id, self.bos_id}))
        object.__setattr__(self, "special_ids", specials)
        n = len(self.tokens)
        if not (0 <= self.eos_id < n and 0 <= self.bos_id < n):
            raise ValueError("eos_id/bos_id outside the vocabulary")

    @property
    def n_vocab(self) -> int:
        return len(self.tokens)

    def token_bytes(self, token: int) -> bytes:
        """Raw bytes of a token (control tokens give their text, like ``<|endoftext|>``)."""
        t = self.tokens[token]
        if token in self.special_ids:
            return t.encode("utf-8")
        u2b = _byte_maps()[1]
        return bytes(u2b[c] for c in t)

    def pieces(self) -> list[bytes]:
        """Bytes of every token, in id order (input of ``backends.base.vocab_fingerprint``)."""
        return [self.token_bytes(i) for i in range(self.n_vocab)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a token sequence, skipping control tokens (invalid UTF-8 is replaced)."""
        out = b"".join(self.token_bytes(i) for i in ids if i not in self.special_ids)
        return out.decode("utf-8", errors="replace")

    def sha256(self) -> str:
        h = hashlib.sha256()
        for part in (self.tokens, self.merges):
            for s in part:
                b = s.encode("utf-8")
                h.update(len(b).to_bytes(4, "little") + b)
        h.update(f"{self.eos_id},{self.bos_id}".encode())
        return h.hexdigest()


def load_vocab(path: str | Path) -> BPEVocab:
    """Read a vocabulary file written by ``scripts/build_tokenizer.py``."""
    return _from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def _from_json(d: dict) -> BPEVocab:
    eos = int(d["eos"])
    return BPEVocab(
        tokens=tuple(d["tokens"]),
        merges=tuple(d["merges"]),
        eos_id=eos,
        bos_id=int(d.get("bos", eos)),
        source=d.get("source", ""),
    )


@functools.lru_cache(maxsize=1)
def default_vocab() -> BPEVocab:
    """The shipped 2048-token vocabulary (cached; immutable)."""
    text = resources.files("cascade_tui.factory").joinpath("data", _DATA_FILE).read_text(encoding="utf-8")
    return _from_json(json.loads(text))


# --- fast encoding through HF tokenizers (optional dependency, imported lazily) -----------------


def hf_tokenizer(vocab: BPEVocab | None = None, *, special: bool = False):
    """A ``tokenizers.Tokenizer`` equivalent to llama.cpp's ``gpt-2`` tokenization of ``vocab``.

    No BOS is added. With ``special=False`` (llama.cpp's default ``parse_special=False``) the text
    ``<|endoftext|>`` is tokenized as plain text; with ``special=True`` it becomes the EOS id.
    Needs the HF ``tokenizers`` package (``pip install tokenizers``).
    """
    return _hf_tokenizer(vocab or default_vocab(), special)


@functools.lru_cache(maxsize=4)
def _hf_tokenizer(vocab: BPEVocab, special: bool):
    try:
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("encode_fast needs the 'tokenizers' package: pip install tokenizers") from e
    tok_vocab = {t: i for i, t in enumerate(vocab.tokens)}
    merges = [tuple(m.split(" ")) for m in vocab.merges]
    tok = Tokenizer(models.BPE(vocab=tok_vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    if special:
        tok.add_special_tokens([AddedToken(vocab.tokens[i], special=True, normalized=False)
                                for i in vocab.special_ids])
    return tok


def encode_fast(
    texts: Sequence[str], vocab: BPEVocab | None = None, *, special: bool = False
) -> list[list[int]]:
    """Token ids of each text (no BOS), in batch, through HF ``tokenizers`` (lazily imported).

    Gives the same ids as llama.cpp's tokenizer for a GGUF written with the same ``vocab``
    (``Llama.tokenize(text.encode(), add_bos=False)``).
    """
    if isinstance(texts, str):
        raise TypeError("encode_fast takes a sequence of strings; wrap a single text in a list")
    tok = hf_tokenizer(vocab, special=special)
    return [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]
