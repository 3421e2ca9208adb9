"""Expert-routing capture through llama.cpp's eval callback (``llama_context_params.cb_eval``).

llama.cpp names the experts selected for MoE layer ``il`` ``ffn_moe_topk-<il>`` (I32, a view of
``[n_expert_used, n_tokens]`` whose rows are ``nb[1]`` bytes apart). :class:`RoutingCapture`
installs a callback that asks the scheduler for exactly those tensors and copies their rows into a
numpy buffer with ``ggml_backend_tensor_get`` (so it works whatever backend holds the tensor).

Two implementations share one state struct (``RcState`` here, ``rc_state`` in ``routing.c``):

* ``native``: ``rc_eval_cb`` from the compiled helper library (cheap; see ``native.py``).
* ``python``: a ctypes callback doing the same in Python, used when no C compiler is available
  (or when forced, for tests). It never raises: an exception escaping an eval callback makes
  ggml stop the graph silently while llama_decode still returns 0 with garbage logits.
  KeyboardInterrupt/SystemExit are remembered and re-raised by the caller after the decode.

``want_probs`` additionally captures the router probabilities ``ffn_moe_probs-<il>``
(``[n_expert]`` per token), which tests use to check that the captured ids are their top-k.
"""

from __future__ import annotations

import ctypes
import time

from backends.llamacpp import lib as _lib  # llama_cpp before numpy (see lib.py)
from backends.llamacpp import native

import numpy as np

GGML_TYPE_F32 = 0
GGML_TYPE_I32 = 26

TOPK_PREFIX = b"ffn_moe_topk-"
PROBS_PREFIX = b"ffn_moe_probs-"


class GgmlTensor(ctypes.Structure):
    """``struct ggml_tensor`` of ggml 0.25.3 (llama-cpp-python 0.3.36), declared by hand."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * 4),
        ("nb", ctypes.c_size_t * 4),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * 10),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * 64),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


class RcState(ctypes.Structure):
    """Mirror of ``rc_state`` in routing.c."""

    _fields_ = [
        ("enabled", ctypes.c_int32),
        ("n_layer", ctypes.c_int32),
        ("k", ctypes.c_int32),
        ("cap_tokens", ctypes.c_int32),
        ("topk", ctypes.POINTER(ctypes.c_int32)),
        ("rows", ctypes.POINTER(ctypes.c_int32)),
        ("want_probs", ctypes.c_int32),
        ("n_expert", ctypes.c_int32),
        ("probs", ctypes.POINTER(ctypes.c_float)),
        ("prob_rows", ctypes.POINTER(ctypes.c_int32)),
        ("n_calls", ctypes.c_int32),
        ("n_errors", ctypes.c_int32),
        ("tensor_get", ctypes.c_void_p),
        ("scratch", ctypes.c_void_p),
        ("scratch_size", ctypes.c_size_t),
        ("ns", ctypes.c_int64),
    ]


def hand_layout() -> dict[str, int]:
    return {
        "type": GgmlTensor.type.offset,
        "ne": GgmlTensor.ne.offset,
        "nb": GgmlTensor.nb.offset,
        "data": GgmlTensor.data.offset,
        "name": GgmlTensor.name.offset,
        "sizeof_tensor": ctypes.sizeof(GgmlTensor),
        "sizeof_state": ctypes.sizeof(RcState),
    }


def native_status() -> tuple[ctypes.CDLL | None, str]:
    """The native library if it is usable for routing, and a one-line reason when it is not."""
    nat = native.load()
    if nat is None:
        return None, native.last_error or "native helper unavailable"
    lay = native.layout(nat)
    if lay["sizeof_state"] != ctypes.sizeof(RcState):
        return None, f"rc_state size mismatch ({lay['sizeof_state']} != {ctypes.sizeof(RcState)})"
    return nat, "ok"


def tensor_layout() -> dict[str, int]:
    """Offsets of struct ggml_tensor: from the compiled headers when possible, else by hand."""
    nat = native.load()
    if nat is not None:
        lay = native.layout(nat)
        if lay["headers"]:
            return lay
    return hand_layout()


def _match(name: bytes, prefix: bytes) -> int:
    if not name.startswith(prefix):
        return -1
    rest = name[len(prefix):]
    return int(rest) if rest.isdigit() and len(rest) < 7 else -1


class RoutingCapture:
    """Owns the capture buffers and the callback passed to ``llama_init_from_model``.

    ``mode``: "auto" (native if it builds, else python), "native" (error if unavailable) or
    "python". Per decode: :meth:`reset`, llama_decode, then :meth:`take` ``(n)``.
    """

    def __init__(
        self,
        n_layer: int,
        moe_layers: tuple[int, ...],
        k: int,
        n_expert: int,
        cap_tokens: int,
        mode: str = "auto",
        want_probs: bool = False,
    ):
        if mode not in ("auto", "native", "python"):
            raise ValueError(f"routing mode must be auto, native or python, not {mode!r}")
        self.moe_layers = np.asarray(moe_layers, dtype=np.intp)
        self.n_layer, self.k, self.n_expert, self.cap_tokens = n_layer, k, n_expert, cap_tokens
        self.topk = np.zeros((n_layer, cap_tokens, k), dtype=np.int32)
        self.rows = np.zeros(n_layer, dtype=np.int32)
        self.want_probs = bool(want_probs)
        self.probs = np.zeros((n_layer, cap_tokens, n_expert), dtype=np.float32) if want_probs else None
        self.prob_rows = np.zeros(n_layer, dtype=np.int32)
        self.scratch = np.zeros(max(4096, cap_tokens * max(n_expert, k, 1) * 4 + 64), dtype=np.uint8)
        self.pending: BaseException | None = None  # KeyboardInterrupt caught inside the callback
        self.py_exceptions = 0  # exceptions swallowed by the python callback
        self.last_error = ""

        llc = _lib.require()
        tensor_get = _lib.ggml_base().ggml_backend_tensor_get
        st = RcState()
        st.enabled = 1
        st.n_layer, st.k, st.cap_tokens = n_layer, k, cap_tokens
        st.topk = self.topk.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        st.rows = self.rows.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        st.want_probs = int(self.want_probs)
        st.n_expert = n_expert
        if self.probs is not None:
            st.probs = self.probs.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        st.prob_rows = self.prob_rows.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        st.tensor_get = ctypes.cast(tensor_get, ctypes.c_void_p).value
        st.scratch = self.scratch.ctypes.data
        st.scratch_size = self.scratch.nbytes
        self.state = st

        nat, why = (None, "forced") if mode == "python" else native_status()
        if nat is None and mode == "native":
            raise _lib.BackendError(f"native routing capture unavailable: {why}")
        if nat is not None:
            self.mode = "native"
            addr = ctypes.cast(nat.rc_eval_cb, ctypes.c_void_p).value
            self.callback = llc.ggml_backend_sched_eval_callback(addr)
        else:
            self.mode = "python"
            self.native_unavailable = why
            self.callback = llc.ggml_backend_sched_eval_callback(self._make_py_callback(tensor_get))
        self.user_data = ctypes.cast(ctypes.pointer(st), ctypes.c_void_p)

    # -- control -------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return bool(self.state.enabled)

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self.state.enabled = 1 if on else 0

    def reset(self) -> None:
        self.rows[:] = 0
        self.prob_rows[:] = 0
        self.state.n_calls = 0
        self.state.n_errors = 0
        self.state.ns = 0

    @property
    def elapsed_s(self) -> float:
        """Seconds spent inside the callback since :meth:`reset` (native: the data phase, where
        the rows are copied out; python: every call, since each one runs the interpreter)."""
        return self.state.ns * 1e-9

    def take(self, n: int) -> np.ndarray | None:
        """Routing of the last decode: int32 ``[n_moe_layers, n, k]``, or None if incomplete."""
        got = self.rows[self.moe_layers]
        if self.state.n_errors or got.size == 0 or not np.all(got == n):
            self.last_error = (
                f"routing capture incomplete: rows per MoE layer {got.tolist()} for {n} tokens, "
                f"{self.state.n_errors} tensors rejected"
            )
            return None
        return self.topk[self.moe_layers, :n, :].copy()

    def take_probs(self, n: int) -> np.ndarray | None:
        if self.probs is None:
            return None
        got = self.prob_rows[self.moe_layers]
        if got.size == 0 or not np.all(got == n):
            return None
        return self.probs[self.moe_layers, :n, :].copy()

    # -- python fallback -----------------------------------------------------------------------
    def _make_py_callback(self, tensor_get):
        lay = tensor_layout()
        o_type, o_ne, o_nb, o_name = lay["type"], lay["ne"], lay["nb"], lay["name"]
        st, topk, rows, probs, prob_rows, scratch = (
            self.state, self.topk, self.rows, self.probs, self.prob_rows, self.scratch,
        )
        i64x4 = ctypes.c_int64 * 4
        u64x4 = ctypes.c_size_t * 4
        string_at = ctypes.string_at
        scratch_ptr = scratch.ctypes.data
        me = self

        def read_rows(t: int, width: int, n: int, ne: tuple, nb: tuple, dtype) -> np.ndarray | None:
            span = 4 + sum((x - 1) * y for x, y in zip(ne, nb))
            row_bytes = width * 4
            if nb[0] != 4 or (n - 1) * nb[1] + row_bytes > span or span > scratch.nbytes:
                return None
            tensor_get(t, scratch_ptr, 0, span)
            flat = scratch[:span]
            return np.lib.stride_tricks.as_strided(
                flat.view(np.uint8), shape=(n, row_bytes), strides=(nb[1], 1)
            ).copy().view(dtype)

        perf_ns = time.perf_counter_ns

        def cb(t, ask, _ud):
            t0 = perf_ns()
            try:
                return body(t, ask)
            finally:
                st.ns += perf_ns() - t0

        def body(t, ask):
            try:
                if ask:
                    if not st.enabled:
                        return False
                    name = string_at(t + o_name)
                    if _match(name, TOPK_PREFIX) >= 0:
                        return True
                    return bool(st.want_probs) and _match(name, PROBS_PREFIX) >= 0
                if not st.enabled:
                    return True
                name = string_at(t + o_name)
                il = _match(name, TOPK_PREFIX)
                is_probs = False
                if il < 0 and st.want_probs:
                    il = _match(name, PROBS_PREFIX)
                    is_probs = il >= 0
                if il < 0 or il >= st.n_layer:
                    return True
                st.n_calls += 1
                ne = tuple(i64x4.from_address(t + o_ne))
                nb = tuple(u64x4.from_address(t + o_nb))
                typ = ctypes.c_int.from_address(t + o_type).value
                width, n = ne[0], ne[1]
                if ne[2] != 1 or ne[3] != 1 or n <= 0 or min(ne) <= 0:
                    st.n_errors += 1
                    return True
                if is_probs:
                    have = int(prob_rows[il])
                    if typ != GGML_TYPE_F32 or width != st.n_expert or have + n > st.cap_tokens:
                        st.n_errors += 1
                        return True
                    data = read_rows(t, width, n, ne, nb, np.float32)
                    if data is None:
                        st.n_errors += 1
                        return True
                    probs[il, have : have + n] = data
                    prob_rows[il] = have + n
                else:
                    have = int(rows[il])
                    if typ != GGML_TYPE_I32 or width != st.k or have + n > st.cap_tokens:
                        st.n_errors += 1
                        return True
                    data = read_rows(t, width, n, ne, nb, np.int32)
                    if data is None:
                        st.n_errors += 1
                        return True
                    topk[il, have : have + n] = data
                    rows[il] = have + n
                return True
            except BaseException as e:  # never let anything escape into ggml
                try:
                    me.py_exceptions += 1
                    st.n_errors += 1
                    if isinstance(e, (KeyboardInterrupt, SystemExit)) and me.pending is None:
                        me.pending = e
                except BaseException:
                    pass
                return not ask

        return cb
