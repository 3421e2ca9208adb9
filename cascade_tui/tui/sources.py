"""Where the screen's events come from: a live session (:class:`LiveSource`) or a recording
(:class:`RecordedSource`). Both post the same messages (``tui.messages``) to the screen, so the
widgets cannot tell a replay from a live run.

A live source serves the session from a host (``cascade_tui.session.host``, a child process by
default); a thread worker of the app reads the host's event batches (at most ~15 a second, so a
fast model never floods the screen) and only posts messages. Edits go back to the session's
control channel and apply at the next iteration boundary.
"""

from __future__ import annotations

import bisect
import threading
from typing import TYPE_CHECKING, Any, Callable

from cascade_tui.tui.messages import Events, Failed, Loading, Position, Ready, Reset, TurnDone

if TYPE_CHECKING:
    from textual.screen import Screen


class Source:
    """The interface the screen talks to."""

    live = False

    def start(self, screen: Screen) -> None:
        self.screen = screen

    @property
    def running(self) -> bool:
        return False

    @property
    def ready(self) -> bool:
        return False

    def submit(self, message: str) -> str | None:
        """Start a turn; returns None, or why it cannot start (one line)."""
        return "this is a recording: there is no model to ask"

    def cancel(self) -> None:
        pass

    def check_param(self, key: str, value: Any) -> Any:
        raise ValueError("a recording cannot be changed")

    def set_param(self, key: str, value: Any) -> list:
        return []

    def switch_policy(self, spec: str) -> list:
        return []

    def clear(self) -> list:
        return []

    def close(self) -> None:
        pass


class LiveSource(Source):
    """A live session, served by a :class:`~cascade_tui.session.host.HostClient` (a child
    process by default, so drawing never slows generation; ``mode="thread"`` for tests). A
    worker thread of the app reads the host's replies and only posts messages."""

    live = True

    def __init__(self, opener: Callable[..., Any], mode: str = "process"):
        """``opener(progress=...)`` loads the models and returns a Session; it runs in the host
        and must be picklable for ``mode="process"`` (a module-level function or a partial)."""
        from cascade_tui.session.host import HostClient

        self.client = HostClient(opener, mode)
        self.conversation = None
        self.failed: str | None = None  # why the session could not start
        self.record_path: str | None = None
        self._ready = False
        self._closed = threading.Event()
        self._turn_done = threading.Event()
        self._turn_done.set()
        self._policy = ("", {})  # the policy in force, as the events tell it (for check_param)

    def launch(self) -> None:
        """Start loading the models now (before the app owns the terminal, in process mode)."""
        self.client.start()

    def start(self, screen: Screen) -> None:
        super().start(screen)
        self.client.start()  # no-op when launched already
        screen.run_worker(self._listen, thread=True, group="host", name="session host")

    def _listen(self) -> None:
        from cascade_tui.session.chat import Conversation

        post = self.screen.post_message
        while True:
            try:
                msg = self.client.recv()
            except EOFError:
                break
            kind = msg[0]
            if kind == "loading":
                post(Loading(msg[1]))
            elif kind == "ready":
                info = msg[1]
                self.conversation = Conversation.for_model(info["extra"])
                self.record_path = info["record_path"]
                pol = info["header"].get("policy") or {}
                self._policy = (pol.get("name", ""), dict(pol.get("params") or {}))
                self._ready = True
                post(Ready(info["header"], info["notes"]))
            elif kind == "failed":
                if not self._ready:
                    self.failed = msg[1]
                post(Failed(msg[1]))
            elif kind == "events":
                self._follow(msg[1])
                post(Events(msg[1]))
            elif kind == "turn_done":
                self._turn_done.set()
                post(TurnDone())
            elif kind == "closed":
                self._host_closed = True
                break
        if not (self._host_closed or self._closing) and self.failed is None:
            code = self.client.exitcode
            why = f" (exit code {code})" if code not in (None, 0) else ""
            self.failed = f"the model process stopped unexpectedly{why}"
            post(Failed(self.failed))
        self._turn_done.set()
        self._closed.set()

    def _follow(self, events: list) -> None:
        """Keep the policy mirror and the conversation up to date from the stream."""
        for ev in events:
            if ev.type in ("turn",):
                self._policy = (ev.policy, dict(ev.params))
            elif ev.type == "param" and ev.ok:
                self._policy = (ev.policy, dict(ev.params))
            elif ev.type == "end" and self._pending is not None:
                self.conversation.add_turn(self._pending, ev.text)
                self._pending = None

    _pending: str | None = None  # the message of the running turn

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def running(self) -> bool:
        return not self._turn_done.is_set()

    def submit(self, message: str) -> str | None:
        from cascade_tui.session.chat import TemplateError

        if not self._ready:
            return self.failed or "the model is still loading"
        if self.running:
            return "a turn is running (Esc stops it)"
        try:
            prompt = self.conversation.prompt_for(message)
        except TemplateError as e:
            return str(e)
        self._pending = message
        self._turn_done.clear()
        if not self.client.send(("turn", prompt, message)):
            self._turn_done.set()
            return "the model process is not running"
        return None

    def cancel(self) -> None:
        self.client.send(("cancel", "cancelled"))

    def check_param(self, key: str, value: Any) -> Any:
        from cascade_tui.policy import make_policy

        label, params = self._policy
        return make_policy(label, params).check(key, value)

    def set_param(self, key: str, value: Any) -> list:
        self.client.send(("set_param", key, value))
        return []

    def switch_policy(self, spec: str) -> list:
        self.client.send(("switch", spec))
        return []

    def clear(self) -> list:
        if self.running or self.conversation is None:
            return []
        self.conversation.clear()
        self.client.send(("clear",))
        return []

    def wait(self, timeout: float) -> bool:
        """Wait for a running turn to end; True when none is running."""
        return self._turn_done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Stop a running turn, close the session (its recording ends cleanly) and the host.
        Safe to call more than once."""
        if self._closing:
            return
        self._closing = True
        self.client.send(("close",))
        if not self.client.join(timeout):
            self.client.kill()
        self._closed.set()

    _closing = False
    _host_closed = False  # the host said goodbye (a normal end)


class RecordedSource(Source):
    """Events that already happened (a recording, a test fixture), shown all at once."""

    def __init__(self, header: dict, events: list, title: str = ""):
        self.header = header
        self.events = list(events)
        self.title = title

    @property
    def ready(self) -> bool:
        return True

    def start(self, screen: Screen) -> None:
        super().start(screen)
        screen.post_message(Ready(self.header, []))
        screen.post_message(Events(self.events))


SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, None)  # None: as fast as possible
GAP_S = 1.0  # idle time between events longer than this plays as this (a user thinking between turns)
FASTEST_BATCH = 4000  # events per frame at full speed


class ReplaySource(Source):
    """A recording played back through the same messages as a live session: play / pause, speed
    (0.25x to 16x, or as fast as possible), one iteration forward or back, seek to an iteration
    or a time. Going back replays the events up to there into a fresh state."""

    def __init__(self, header: dict, events: list, *, speed: float | None = 1.0, playing: bool = True,
                 notes: list[str] | None = None):
        self.header = header
        self.events = list(events)
        self.notes = list(notes or [])
        self.speed = speed
        self.playing = playing
        self.cursor = 0  # events shown so far
        self.clock = 0.0  # playback time (seconds into the recording, idle gaps shortened)
        self._play_t = _playback_times(self.events)
        self._iters = [i for i, ev in enumerate(self.events) if ev.type == "iteration"]
        self._last_tick: float | None = None

    @property
    def ready(self) -> bool:
        return True

    @property
    def duration(self) -> float:
        return self._play_t[-1] if self._play_t else 0.0

    def start(self, screen: Screen) -> None:
        super().start(screen)
        screen.post_message(Ready(self.header, self.notes))
        screen.set_interval(1 / 15, self._tick)
        self._position()

    # -- playback ------------------------------------------------------------------------------
    def _tick(self) -> None:
        import time

        now = time.monotonic()
        dt = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        if not self.playing:
            return
        if self.cursor >= len(self.events):
            self.playing = False
            self._position()
            return
        if self.speed is None:
            end = min(len(self.events), self.cursor + FASTEST_BATCH)
            self.clock = self._play_t[end - 1]
        else:
            self.clock += dt * self.speed
            end = self.cursor
            while end < len(self.events) and self._play_t[end] <= self.clock:
                end += 1
        self._emit_to(end)
        if self.cursor >= len(self.events):
            self.playing = False
        self._position()

    def _emit_to(self, end: int) -> None:
        if end > self.cursor:
            self.screen.post_message(Events(self.events[self.cursor:end]))
            self.cursor = end

    def _rebuild(self, end: int) -> None:
        """Show exactly the first ``end`` events (from a fresh state when going back)."""
        end = max(0, min(end, len(self.events)))
        if end < self.cursor:
            self.screen.post_message(Reset(self.header))
            self.cursor = 0
        self._emit_to(end)
        self.clock = self._play_t[end - 1] if end else 0.0
        self._position()

    def _position(self) -> None:
        it = bisect.bisect_left(self._iters, self.cursor)  # iterations among the events shown
        self.screen.post_message(Position(self.cursor, len(self.events), it, len(self._iters), self.clock,
                                          self.duration, self.playing, self.speed))

    # -- controls --------------------------------------------------------------------------------
    def toggle(self) -> None:
        if self.cursor >= len(self.events):
            self._rebuild(0)  # at the end: play again from the start
        self.playing = not self.playing
        self._last_tick = None
        self._position()

    def faster(self, step: int = 1) -> None:
        i = SPEEDS.index(self.speed) if self.speed in SPEEDS else 2
        self.speed = SPEEDS[max(0, min(len(SPEEDS) - 1, i + step))]
        self._position()

    def step(self, n: int) -> None:
        """Pause and show ``n`` more (or, negative, fewer) iterations."""
        self.playing = False
        done = [i for i in self._iters if i < self.cursor]
        if n > 0:
            ahead = [i for i in self._iters if i >= self.cursor]
            end = ahead[min(n, len(ahead)) - 1] + 1 if ahead else len(self.events)
        else:
            keep = len(done) + n
            end = done[keep - 1] + 1 if keep > 0 else 0
        self._rebuild(end)

    def seek_iteration(self, n: int) -> None:
        """Show the recording up to and including iteration ``n`` (1-based, across turns)."""
        self.playing = False
        n = max(0, min(n, len(self._iters)))
        self._rebuild(self._iters[n - 1] + 1 if n else 0)

    def seek_time(self, seconds: float) -> None:
        """Show everything that happened in the first ``seconds`` of playback time."""
        self.playing = False
        self._rebuild(bisect.bisect_right(self._play_t, seconds))

    def home(self) -> None:
        self.seek_iteration(0)

    def end(self) -> None:
        self.playing = False
        self._rebuild(len(self.events))


def _playback_times(events: list) -> list[float]:
    """Each event's time in the replay: the recorded times, with idle gaps cut to ``GAP_S``."""
    out, clock, prev = [], 0.0, None
    for ev in events:
        t = ev.t
        if prev is not None:
            clock += min(max(0.0, t - prev), GAP_S)
        prev = t
        out.append(clock)
    return out
