"""The headless session: what ``run``, the TUI, replay and bench stand on (DESIGN section 9).

A :class:`Session` owns the loaded models, the decoder, the active policy, the statistics and the
recorder. ``session.turn(prompt)`` runs one request and yields its typed events; the next turn
reuses the KV cache (the shared prefix is not evaluated again) and the policy's memory. Every
event the session yields is recorded, and the recording holds nothing else.

Control (from any thread): :meth:`Session.set_param`, :meth:`Session.switch_policy` and
:meth:`Session.cancel`. While a turn runs they apply at the next iteration boundary and their
``param`` events appear in the turn's stream; while the session is idle they apply at once and
the events are returned (and recorded). Turns themselves run on one thread at a time.

Failures never escape as exceptions from :meth:`turn`: a request the engine refuses becomes an
``error`` event of kind "input"; a backend failure mid-turn an ``error`` event of kind "backend"
(with the traceback) followed by the turn's ``end`` event (reason "error"); Ctrl-C inside the
turn ends it with reason "interrupted". Closing a turn's generator early ends the turn the same
way, so a recording always closes every turn it opens.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from cascade_tui.engine import (
    EndEvent,
    EngineError,
    ErrorEvent,
    Event,
    GenerationConfig,
    MarkerEvent,
    ParamEvent,
    SetParam,
    SpeculativeDecoder,
    StartEvent,
    SwitchPolicy,
)
from cascade_tui.policy import DEFAULT_POLICY, Policy, PolicyError, make_policy
from cascade_tui.session.recorder import Recorder, default_session_path
from cascade_tui.stats import RunStats, run_summary

if TYPE_CHECKING:
    from cascade_tui.runtime import LoadedModels, ModelOptions


class SessionBusy(RuntimeError):
    """The operation needs an idle session, and a turn is running."""


@dataclass
class RecordOptions:
    record: bool = True
    path: Path | None = None  # None: sessions/<UTC time>.cascade.jsonl


class Session:
    def __init__(
        self,
        models: LoadedModels,
        policy: Policy,
        *,
        generation: GenerationConfig | None = None,
        recorder: Recorder | None = None,
        notes: Sequence[str] = (),
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.models = models
        self.generation = generation or GenerationConfig()
        self.recorder = recorder
        self.notes = list(notes)  # things the user should be told once (e.g. "no drafter: off")
        self.decoder = SpeculativeDecoder(models.target, models.drafter, policy, clock=clock)
        self.clock = clock
        self.turns: list[RunStats] = []  # one per turn, in order
        self.total = RunStats()  # every turn together
        self._open: RunStats | None = None  # the turn that has started and not ended
        self._open_turn = 0
        self._open_t0 = 0.0
        self._lock = threading.Lock()  # guards _busy and every change made while idle
        self._busy = False  # a turn is running
        self.closed = False
        self._cost_key: str | None = None  # set by use_cost_cache

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        model_options: ModelOptions,
        *,
        policy: str = DEFAULT_POLICY,
        params: dict[str, Any] | None = None,
        generation: GenerationConfig | None = None,
        record: RecordOptions | None = None,
        argv: Sequence[str] = (),
        progress: Callable[[str], None] | None = None,
        cost_cache: bool = True,
    ) -> Session:
        """Validate the policy, load the models, start the recording. Raises
        :class:`cascade_tui.runtime.UserError` (one line) for anything the user can fix."""
        from cascade_tui.runtime import UserError, load_models

        try:
            pol = make_policy(policy, params)
        except PolicyError as e:
            raise UserError(str(e)) from None
        gen = generation or GenerationConfig()
        rec = record or RecordOptions()
        models = load_models(model_options, progress=progress)
        notes = list(getattr(models, "notes", ()) or ())
        if models.drafter is None and pol.label != "off":
            notes.append(f"no drafter, so policy {pol.label} runs as off")
            pol = make_policy("off")
        recorder = None
        if rec.record:
            path = rec.path or default_session_path()
            try:
                recorder = Recorder(path, build_header(models, pol, gen, model_options, argv))
            except OSError as e:
                models.close()
                raise UserError(f"cannot write the session recording {path}: {e.strerror or e}") from None
        session = cls(models, pol, generation=gen, recorder=recorder, notes=notes)
        if cost_cache:
            session.use_cost_cache(build_header(models, pol, gen, model_options, argv))
        return session

    # -- learned costs (the ``learned`` policy), kept between runs -------------------------------
    def use_cost_cache(self, header: Mapping[str, Any]) -> None:
        """Seed policies that learn a cost curve from the user cache, and save what they learn at
        the end of each turn and at close (``--no-cost-cache``: never called)."""
        from cascade_tui.session.costcache import cost_key

        self._cost_key = cost_key(header)
        self._seed_costs()

    def _seed_costs(self) -> None:
        from cascade_tui.session.costcache import load_costs

        pol = self.decoder.policy
        if self._cost_key and hasattr(pol, "import_costs"):
            data = load_costs(self._cost_key)
            if data and pol.import_costs(data):
                self.notes.append("learned costs from an earlier run loaded (--no-cost-cache ignores them)")

    def _save_costs(self) -> None:
        from cascade_tui.session.costcache import save_costs

        pol = self.decoder.policy
        if self._cost_key and hasattr(pol, "export_costs"):
            data = pol.export_costs()
            if data.get("costs"):
                save_costs(self._cost_key, data)

    # -- state -------------------------------------------------------------------------------
    @property
    def policy(self) -> Policy:
        return self.decoder.policy

    @property
    def running(self) -> bool:
        return self._busy

    @property
    def record_path(self) -> Path | None:
        return self.recorder.path if self.recorder else None

    @property
    def header(self) -> dict:
        return self.recorder.header if self.recorder else {}

    def summary(self) -> dict:
        """What ``run --json`` prints, for all turns so far."""
        header = self.header or build_header(self.models, self.policy, self.generation, None, ())
        path = str(self.recorder.path) if self.recorder else None
        return run_summary(self.total, header, path)

    # -- control -----------------------------------------------------------------------------
    def check_param(self, key: str, value: Any) -> Any:
        """The value :meth:`set_param` would apply, or PolicyError with the reason it would be
        refused (against the policy in force now)."""
        return self.policy.check(key, value)

    def set_param(self, key: str, value: Any) -> list[Event]:
        return self._control(SetParam(key, value))

    def switch_policy(self, spec: str, params: dict[str, Any] | None = None) -> list[Event]:
        return self._control(SwitchPolicy(spec, dict(params or {})))

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the running turn at the next iteration boundary (nothing happens when idle)."""
        if self.running:
            self.decoder.cancel(reason)

    def _control(self, msg) -> list[Event]:
        with self._lock:
            self.decoder.send(msg)
            if self._busy:
                return []  # the running turn applies it at the next boundary
            events, _ = self.decoder.apply_control()
            return [self._emit(ev) for ev in events]

    def mark(self, label: str, **data: Any) -> Event:
        """Record a marker (idle only)."""
        with self._lock:
            self._check_idle()
            return self._emit(self.decoder.stamp(MarkerEvent(label=label, data=data)))

    def clear_context(self) -> Event:
        """Forget the conversation: the next turn starts on an empty KV cache (idle only)."""
        with self._lock:
            self._check_idle()
            self.decoder.forget()
            return self._emit(self.decoder.stamp(MarkerEvent(label="context cleared")))

    def _check_idle(self) -> None:
        if self._busy:
            raise SessionBusy("a turn is running")

    # -- turns -------------------------------------------------------------------------------
    def turn(
        self,
        prompt: str | Sequence[int],
        *,
        message: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Iterator[Event]:
        """Run one request; yield its events. ``prompt`` is the whole context the model sees
        (text or token ids); ``message`` is what the user typed this turn (recorded with the
        turn; defaults to ``prompt`` when it is text)."""
        if self.closed:
            raise RuntimeError("the session is closed")
        cfg = replace(
            self.generation,
            **{k: v for k, v in (("max_tokens", max_tokens), ("temperature", temperature), ("seed", seed)) if v is not None},
        )
        if message is None:
            message = prompt if isinstance(prompt, str) else ""
        with self._lock:
            if self._busy:
                raise SessionBusy("a turn is already running")
            self._busy = True
        try:
            yield from self._run_turn(prompt, message, cfg)
        finally:
            self._busy = False

    def _run_turn(self, prompt, message: str, cfg: GenerationConfig) -> Iterator[Event]:
        gen = self.decoder.generate(prompt, cfg)
        try:
            for ev in gen:
                if isinstance(ev, StartEvent):
                    ev.message = message
                yield self._emit(ev)
        except EngineError as e:  # refused before it started: no turn opened
            yield self._emit(self.decoder.stamp(ErrorEvent(kind="input", message=str(e))))
        except KeyboardInterrupt:
            end = self._finish("interrupted")
            if end is not None:
                yield end
        except GeneratorExit:  # the consumer stopped listening mid-turn
            gen.close()
            self._finish("interrupted")
            raise
        except Exception as e:  # a backend failure mid-run: the details go to the recording
            yield self._emit(self.decoder.stamp(ErrorEvent(
                kind="backend", message=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())))
            end = self._finish("error")
            try:  # the caches may hold half an iteration: start the next turn from scratch
                self.decoder.forget()
            except Exception:
                pass
            if end is not None:
                yield end

    def _finish(self, reason: str) -> Event | None:
        """Write the ``end`` event of a turn that stopped without one."""
        st = self._open
        if st is None:
            return None
        emitted = list(st.emitted)
        try:
            text = self.models.target.detokenize(emitted)
        except Exception:
            text = ""
        ev = EndEvent(turn=self._open_turn, reason=reason, generated_tokens=len(emitted),
                      iterations=st.iterations, wall_s=self.clock() - self._open_t0, text=text)
        return self._emit(self.decoder.stamp(ev))

    def _emit(self, ev: Event) -> Event:
        if isinstance(ev, StartEvent):
            self._open = RunStats()
            self._open_turn = ev.turn
            self._open_t0 = self.clock() - ev.prefill_s
            self.turns.append(self._open)
        if self._open is not None:
            self._open.add(ev)
        self.total.add(ev)
        if self.recorder is not None:
            self.recorder.record(ev)
        if isinstance(ev, EndEvent):
            self._open = None
            self._save_costs()
        elif isinstance(ev, ParamEvent) and ev.key == "policy" and ev.ok:
            self._seed_costs()  # a policy switched to mid-session starts informed too
        return ev

    # -- end -----------------------------------------------------------------------------------
    def close(self) -> None:
        """End an open turn ("closed"), close the recording, free the models. Call it from the
        thread that ran the turns, or once they are over."""
        if self.closed:
            return
        self.closed = True
        try:
            self._finish("closed")
        finally:
            if self.recorder is not None:
                self.recorder.close()
            self.models.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def model_header(path: str, info) -> dict:
    """A model's part of the session header: what it is, and which file exactly (sha256)."""
    from cascade_tui.fileid import file_identity

    d = info.to_dict()
    d["path"] = path
    try:
        d.update(file_identity(path))
    except OSError:
        d.update({"sha256": None, "fingerprint": None})
    return d


def build_header(models: LoadedModels, policy: Policy, generation: GenerationConfig,
                 options: ModelOptions | None, argv: Sequence[str]) -> dict:
    from backends.base import default_threads
    from cascade_tui.machine import machine_info

    draft: dict[str, Any] = {"name": models.draft_label}
    dmodel = models.draft_model
    if dmodel is not None:
        draft.update(model_header(dmodel.info.path, dmodel.info))
        draft["name"] = models.draft_label
        draft["max_catch_up"] = getattr(models.drafter, "max_catch_up", None)
    threads = (options.threads if options else None) or default_threads()
    return {
        "backend": models.backend,
        "model": model_header(models.model_path, models.target.info),
        "draft": draft,
        "policy": {"name": policy.label, "params": policy.params},
        "generation": {"max_tokens": generation.max_tokens, "temperature": generation.temperature,
                       "seed": generation.seed},
        "machine": machine_info(threads, models.target.info.extra),
        "argv": list(argv),
    }
