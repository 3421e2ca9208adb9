"""llama.cpp backend (llama-cpp-python 0.3.36, low-level ctypes API).

Import order matters: ``lib`` is imported first so that llama.cpp's shared libraries are loaded
before numpy's (numpy first segfaulted at model load on a CUDA host; see ``lib.py``). Import this
package (or ``backends.llamacpp.lib``) before numpy in programs that will load GGUF models.
"""

from backends.llamacpp import lib  # noqa: I001  (must stay first)
from backends.llamacpp.gguf_info import GGUFHeader, parse as parse_gguf
from backends.llamacpp.target import (
    LlamaTarget,
    load_target,
    make_drafter,
    read_gguf_info,
)

read_info = read_gguf_info  # the backend registry's name for it (see backends/registry.py)

__all__ = [
    "GGUFHeader",
    "LlamaTarget",
    "lib",
    "load_target",
    "make_drafter",
    "parse_gguf",
    "read_gguf_info",
    "read_info",
]
