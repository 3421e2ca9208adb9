"""A small, defensive GGUF header reader: validates a file before llama.cpp sees it.

llama.cpp answers a non-GGUF or truncated file with a NULL model and a log line at best (and
memory-maps tensor data past the end of the file at worst), so we check the magic, parse the
metadata and tensor table with bounds checks on every read, and verify that every tensor's data
lies inside the file. Only small metadata values are kept; big arrays (the vocabulary) are
recorded as their length. Nothing here loads weights: :func:`parse` reads the header only, so it
is fast on multi-GB files (``cascade-tui inspect``).
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from backends.base import BackendError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
SMALL_ARRAY = 64  # arrays longer than this are kept as ArrayInfo (type, length)

# value types: fmt for scalars
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class ArrayInfo:
    type: int
    length: int


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type: int
    offset: int  # relative to the data section

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class GGUFHeader:
    path: str
    file_size: int
    version: int
    metadata: dict = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0

    @property
    def arch(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch_value(self, key: str, default=None):
        return self.metadata.get(f"{self.arch}.{key}", default)

    @property
    def n_vocab(self) -> int:
        toks = self.metadata.get("tokenizer.ggml.tokens")
        if isinstance(toks, ArrayInfo):
            return toks.length
        if isinstance(toks, list):
            return len(toks)
        return int(self.arch_value("vocab_size", 0) or 0)

    @property
    def moe_layers(self) -> tuple[int, ...]:
        pat = re.compile(r"blk\.(\d+)\.ffn_gate_inp\.weight$")
        return tuple(sorted({int(m.group(1)) for t in self.tensors if (m := pat.match(t.name))}))

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)


def _type_sizes() -> dict[int, tuple[int, int]]:
    try:
        from gguf.constants import GGML_QUANT_SIZES

        return {int(k): (int(v[0]), int(v[1])) for k, v in GGML_QUANT_SIZES.items()}
    except Exception:  # gguf-py missing or changed: fall back to the plain types
        return {0: (1, 4), 1: (1, 2), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2)}


class _Corrupt(Exception):
    pass


class _Reader:
    def __init__(self, buf, size: int):
        self.buf, self.size, self.pos = buf, size, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise _Corrupt(f"header ends early (needs byte {self.pos + n}, file has {self.size})")
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise _Corrupt(f"header ends early (needs byte {self.pos + n}, file has {self.size})")
        self.pos += n

    def scalar(self, fmt: str):
        s = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.take(s))[0]

    def string(self) -> str:
        n = self.scalar("Q")
        if self.pos + n > self.size:
            raise _Corrupt(f"header ends early (a string of {n} bytes at byte {self.pos}, file has {self.size})")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, vtype: int):
        if vtype in _SCALAR:
            return self.scalar(_SCALAR[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype = self.scalar("I")
            count = self.scalar("Q")
            item = struct.calcsize("<" + _SCALAR[etype]) if etype in _SCALAR else 8
            if self.pos + count * item > self.size:
                raise _Corrupt(
                    f"header ends early (an array of {count} items at byte {self.pos}, "
                    f"file has {self.size} bytes)"
                )
            if count > SMALL_ARRAY:
                if etype in _SCALAR:
                    self.skip(count * struct.calcsize("<" + _SCALAR[etype]))
                elif etype == _STRING:
                    for _ in range(count):
                        n = self.scalar("Q")
                        self.skip(n)
                else:
                    raise _Corrupt(f"unsupported array element type {etype}")
                return ArrayInfo(etype, count)
            return [self.value(etype) for _ in range(count)]
        raise _Corrupt(f"unknown metadata value type {vtype}")


def check_file(path: str | os.PathLike) -> Path:
    """Existence and magic checks: one-line BackendError for a missing or non-GGUF file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise BackendError(f"model file not found: {p}")
    if p.is_dir():
        raise BackendError(f"{p} is a directory, not a .gguf file (directories need --backend torch)")
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise BackendError(f"cannot read {p}: {e.strerror or e}") from None
    if len(head) < 4 or head[:4] != GGUF_MAGIC:
        what = "an empty file" if not head else f"starts with {head[:4]!r}"
        raise BackendError(f"{p.name} is not a GGUF file ({what}; expected b'GGUF')")
    return p


def parse(path: str | os.PathLike, check_data: bool = True) -> GGUFHeader:
    """Parse the header of ``path``; BackendError (one line) if it is missing, not GGUF, corrupt
    or truncated (tensor data past the end of the file)."""
    p = check_file(path)
    size = p.stat().st_size
    try:
        with open(p, "rb") as f:
            if size == 0:
                raise _Corrupt("empty file")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return _parse(mm, size, p, check_data)
    except _Corrupt as e:
        raise BackendError(f"{p.name} is a truncated or corrupt GGUF file: {e}") from None
    except (OSError, ValueError) as e:
        raise BackendError(f"cannot read {p.name} as GGUF: {e}") from None


def _parse(mm, size: int, p: Path, check_data: bool) -> GGUFHeader:
    r = _Reader(mm, size)
    r.take(4)
    version = r.scalar("I")
    if version > 0xFFFF and struct.unpack(">I", struct.pack("<I", version))[0] <= 0xFFFF:
        raise BackendError(f"{p.name} is a big-endian GGUF file, which is not supported here")
    if version not in (2, 3):
        raise BackendError(f"{p.name} has GGUF version {version}; llama.cpp reads versions 2 and 3")
    n_tensors = r.scalar("Q")
    n_kv = r.scalar("Q")
    if n_tensors > size or n_kv > size:
        raise _Corrupt(f"implausible counts ({n_tensors} tensors, {n_kv} metadata keys)")
    hdr = GGUFHeader(path=str(p), file_size=size, version=version)
    for _ in range(n_kv):
        key = r.string()
        vtype = r.scalar("I")
        hdr.metadata[key] = r.value(vtype)
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.scalar("I")
        if n_dims > 8:
            raise _Corrupt(f"tensor {name!r} has {n_dims} dimensions")
        shape = tuple(r.scalar("Q") for _ in range(n_dims))
        ttype = r.scalar("I")
        offset = r.scalar("Q")
        hdr.tensors.append(TensorInfo(name, shape, ttype, offset))
    align = hdr.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise _Corrupt(f"bad general.alignment {align!r}")
    hdr.data_offset = (r.pos + align - 1) // align * align
    if check_data and hdr.tensors:
        sizes = _type_sizes()
        end, worst = hdr.data_offset, None
        for t in hdr.tensors:
            bs = sizes.get(t.type)
            if bs is None:  # a type newer than our gguf package: only its start can be checked
                need = hdr.data_offset + t.offset
            else:
                blk, tsz = bs
                need = hdr.data_offset + t.offset + (t.n_elements + blk - 1) // blk * tsz
            if need > end:
                end, worst = need, t.name
        if end > size:
            raise _Corrupt(
                f"tensor data ends at byte {end} ({worst}) but the file has only {size} bytes "
                "(incomplete download or copy?)"
            )
    return hdr
