"""Runtimes behind the engine: llama.cpp (``backends.llamacpp``), PyTorch (``backends.torch``),
and drafters that need no runtime (``backends.ngram``). The contract is in ``backends.base``."""
