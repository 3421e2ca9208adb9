"""Model factory: small GGUF models (MoE targets, dense drafters) with a real BPE tokenizer.

Everything here is generated (seeded random or caller-provided weights); nothing is downloaded.
"""

from .tokenizer import BPEVocab, EOS_TEXT, default_vocab, encode_fast, hf_tokenizer, load_vocab

__all__ = ["BPEVocab", "EOS_TEXT", "default_vocab", "encode_fast", "hf_tokenizer", "load_vocab"]
