"""A session served over two one-way channels: requests in, replies out.

The TUI runs the session in a child process (:class:`HostClient` with ``mode="process"``) so that
drawing the screen never competes with generation for the interpreter lock. Measured on the demo
pair on a 2-core CPU (scripts/bench_tui.py): with the session in a thread of the TUI process, the
TUI reached 0.2-0.5x the tokens/s of headless ``run`` (a frame holds the GIL for ~30 ms); with the
session in its own process it is at parity (docs/BENCHMARKS.md). The same loop also runs in a
thread (``mode="thread"``), for tests and for sessions that cannot be pickled.

Requests (UI -> host), tuples::

    ("turn", prompt, message)   run a turn; its events stream back
    ("set_param", key, value)   ("switch", spec)   ("cancel", reason)   ("clear",)
    ("close",)                  stop a running turn, close the session (recording), exit

Replies (host -> UI)::

    ("loading", text)  ("ready", info)  ("failed", text)
    ("events", [Event, ...])     at most ~15 batches a second during a turn
    ("turn_done",)  ("closed",)

``info`` holds the session header, notes for the user, the recording's path and the target's
``ModelInfo.extra`` (chat template, BOS/EOS text).

This module imports nothing heavy at the top: a child process's first import must be llama.cpp's
(see backends/llamacpp/lib.py), which :func:`open_session` does before anything imports numpy.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable

BATCH_S = 1 / 15


def open_session(model_options, policy: str, params: dict, generation, record, argv, progress,
                 cost_cache: bool = True):
    """The opener the CLI hands to a host: ``Session.open`` with the command's options."""
    import cascade_tui.runtime  # noqa: F401  (first: llama.cpp before numpy)
    from cascade_tui.session.core import Session

    return Session.open(model_options, policy=policy, params=params, generation=generation, record=record,
                        argv=argv, progress=progress, cost_cache=cost_cache)


class _Sender:
    """``send`` from several threads of the host (turns and idle control replies)."""

    def __init__(self, channel):
        self._ch = channel
        self._lock = threading.Lock()

    def send(self, msg) -> None:
        with self._lock:
            self._ch.send(msg)


def serve(opener: Callable[..., Any], requests, replies) -> None:
    """The host loop: open the session with ``opener(progress=...)``, then serve requests until
    ``("close",)`` or the requests channel ends. Never raises: failures become replies."""
    from cascade_tui.errors import UserError

    out = _Sender(replies)
    try:
        session = opener(progress=lambda text: out.send(("loading", text)))
    except UserError as e:  # one line for the user
        out.send(("failed", str(e)))
        return
    except Exception as e:  # anything else: still one line in the UI
        out.send(("failed", f"{type(e).__name__}: {e}"))
        return
    try:
        header = session.header
        if not header:
            from cascade_tui.session.core import build_header

            header = build_header(session.models, session.policy, session.generation, None, ())
        out.send(("ready", {
            "header": header,
            "notes": list(session.notes),
            "record_path": str(session.record_path) if session.record_path else None,
            "extra": dict(session.models.target.info.extra),
        }))
        turns: queue.Queue = queue.Queue()

        def control() -> None:
            """Read requests; control messages apply at once (idle) or at the next boundary."""
            while True:
                try:
                    msg = requests.recv()
                except (EOFError, OSError):
                    msg = ("close",)
                kind = msg[0]
                if kind in ("turn", "close"):
                    if kind == "close":
                        session.cancel("closed")
                    turns.put(msg)
                    if kind == "close":
                        return
                    continue
                try:
                    if kind == "set_param":
                        evs = session.set_param(msg[1], msg[2])
                    elif kind == "switch":
                        evs = session.switch_policy(msg[1])
                    elif kind == "cancel":
                        session.cancel(msg[1] if len(msg) > 1 else "cancelled")
                        evs = []
                    elif kind == "clear":
                        evs = [] if session.running else [session.clear_context()]
                    else:
                        evs = []
                except Exception as e:
                    out.send(("failed", f"{kind}: {type(e).__name__}: {e}"))
                    continue
                if evs:
                    out.send(("events", evs))

        reader = threading.Thread(target=control, name="host-control", daemon=True)
        reader.start()
        while True:
            msg = turns.get()
            if msg[0] == "close":
                break
            _run_turn(session, msg[1], msg[2], out)
    finally:
        try:
            session.close()
        finally:
            try:
                out.send(("closed",))
            except Exception:
                pass


def _run_turn(session, prompt: str, message: str, out: _Sender) -> None:
    batch: list = []
    last = time.monotonic()
    try:
        for ev in session.turn(prompt, message=message):
            batch.append(ev)
            now = time.monotonic()
            if now - last >= BATCH_S:
                out.send(("events", batch))
                batch, last = [], now
    except Exception as e:  # the session turns failures into events; this is a last resort
        out.send(("failed", f"{type(e).__name__}: {e}"))
    finally:
        if batch:
            out.send(("events", batch))
        out.send(("turn_done",))


def serve_process(opener, requests, replies) -> None:
    """:func:`serve` as a child process's main: its stdout and stderr go to a log file, since the
    terminal belongs to the UI (a stray warning would tear the screen)."""
    import os

    from backends.cache import writable_cache_dir

    d = writable_cache_dir("logs")
    target = os.path.join(d, "session-host.log") if d else os.devnull
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    except OSError:
        pass
    serve(opener, requests, replies)


class _QueueChannel:
    """A one-way channel between threads with the Connection interface (send / recv)."""

    def __init__(self):
        self._q: queue.Queue = queue.Queue()

    def send(self, msg) -> None:
        self._q.put(msg)

    def recv(self):
        msg = self._q.get()
        if msg is _EOF:
            raise EOFError
        return msg

    def close(self) -> None:
        self._q.put(_EOF)


_EOF = object()


class HostClient:
    """The UI's side: start a host, send requests, receive replies (``recv`` blocks)."""

    def __init__(self, opener: Callable[..., Any], mode: str = "process"):
        if mode not in ("process", "thread"):
            raise ValueError(f"mode must be 'process' or 'thread', not {mode!r}")
        self.opener = opener
        self.mode = mode
        self._proc = None
        self._thread = None

    def start(self) -> None:
        """Start the host. In process mode call it before a UI takes over the terminal (the
        child is spawned with the real standard streams)."""
        if self._proc is not None or self._thread is not None:
            return
        if self.mode == "thread":
            self._req, self._rep = _QueueChannel(), _QueueChannel()
            self._thread = threading.Thread(target=self._serve_thread, name="session-host", daemon=True)
            self._thread.start()
            return
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # no fork: the UI process has threads and a terminal
        req_r, self._req = ctx.Pipe(duplex=False)
        self._rep, rep_w = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=serve_process, args=(self.opener, req_r, rep_w), name="cascade-session",
                                 daemon=True)
        self._proc.start()
        req_r.close()
        rep_w.close()

    def _serve_thread(self) -> None:
        try:
            serve(self.opener, self._req, self._rep)
        finally:
            self._rep.close()

    def send(self, msg) -> bool:
        try:
            self._req.send(msg)
            return True
        except (OSError, EOFError, ValueError):
            return False

    def recv(self):
        """The next reply; EOFError once the host is gone."""
        try:
            return self._rep.recv()
        except OSError:
            raise EOFError from None

    @property
    def exitcode(self) -> int | None:
        return self._proc.exitcode if self._proc is not None else None

    def join(self, timeout: float) -> bool:
        """Wait for the host to end; True when it has."""
        if self._proc is not None:
            self._proc.join(timeout)
            return not self._proc.is_alive()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
