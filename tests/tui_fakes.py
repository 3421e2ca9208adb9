"""Sessions over the in-memory model for TUI tests (the TUI is real; only the model is fake).
Module-level so that a session host can be given them by name."""

from __future__ import annotations

import time

from backends.model_drafter import ModelDrafter
from cascade_tui.engine import GenerationConfig
from cascade_tui.policy import make_policy
from cascade_tui.runtime import LoadedModels
from cascade_tui.session import Recorder
from cascade_tui.session.core import Session, build_header
from fakes import FakeModel, ScriptedClock, moe_cost


class SlowFake(FakeModel):
    """A fake target that also takes real time per eval (to press Esc mid-answer)."""

    def __init__(self, delay: float = 0.0, **kw):
        super().__init__(**kw)
        self.delay = delay

    def eval(self, tokens):
        if self.delay:
            time.sleep(self.delay)
        return super().eval(tokens)


def fake_session(progress=None, *, policy="cascade", params=None, noise=0.6, delay=0.0, max_tokens=60, seed=3,
                 record_path=None, vocab=32, n_ctx=4096, fail: str | None = None):
    if progress:
        progress("loading the fake model")
    if fail:
        from cascade_tui.errors import UserError

        raise UserError(fail)
    clock = ScriptedClock()
    target = SlowFake(delay=delay, seed=seed, vocab=vocab, n_ctx=n_ctx, clock=clock, cost=moe_cost(per_expert=0.3))
    drafter = ModelDrafter(FakeModel(seed=seed, vocab=vocab, noise=noise, n_ctx=n_ctx))
    models = LoadedModels(target, drafter, "fake://target", "fake://draft", "fake")
    pol = make_policy(policy, params)
    gen = GenerationConfig(max_tokens=max_tokens)
    rec = Recorder(record_path, build_header(models, pol, gen, None, ["chat"])) if record_path else None
    return Session(models, pol, generation=gen, recorder=rec, clock=clock)


def fake_events(policy="cascade", max_tokens=120, prompts=("abc", "hello"), **kw):
    """(header, events) of a deterministic two-turn session: the snapshot tests' source."""
    s = fake_session(policy=policy, max_tokens=max_tokens, **kw)
    header = build_header(s.models, s.policy, s.generation, None, ["chat"])
    header["machine"] = {"cpu": "test CPU", "cores": 2, "threads": 1}  # no machine-specific text
    header["model"]["path"] = "fake-moe.gguf"
    header["draft"]["name"] = "fake-draft.gguf"
    events = []
    context = ""
    for p in prompts:
        context += p
        for ev in s.turn(context, message=p):
            events.append(ev)
            if ev.type == "end":
                context += ev.text
    s.close()
    return header, events


def record_events(path, header, events):
    """Write ``events`` as a recording at ``path`` (returns ``path``)."""
    with Recorder(path, header) as rec:
        for ev in events:
            rec.record(ev)
    return path
