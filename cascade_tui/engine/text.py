"""Turning token ids into text as they arrive, correct when one UTF-8 character spans tokens."""

from __future__ import annotations

import codecs
from typing import Callable, Iterable


class TextStream:
    def __init__(self, token_bytes: Callable[[int], bytes]):
        self._token_bytes = token_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, tokens: Iterable[int]) -> str:
        return self._decoder.decode(b"".join(self._token_bytes(t) for t in tokens))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)
