"""The active policy and every one of its parameters, from the policy's own descriptions (name,
range, help), editable while generating, and a switch between policies.

Edits are posted to the screen (``PolicyPanel.Edit`` / ``PolicyPanel.Switch``), which checks them
against the session and applies them at the next iteration boundary; a refused value stays in
its field with the reason underneath.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from cascade_tui.policy import DEFAULT_POLICY, POLICIES, PolicyError, make_policy

DEFAULT_STATIC_K = 3


def _fmt(x) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def family(label: str) -> str:
    return label.partition(":")[0]


class ParamRow(Vertical):
    DEFAULT_CSS = """
    ParamRow { height: auto; margin-bottom: 0; }
    ParamRow Horizontal { height: 3; }
    ParamRow .name { width: 14; padding: 1 1 0 0; text-style: bold; }
    ParamRow Input { width: 14; }
    ParamRow .help { width: 1fr; padding: 0 1; color: $text-muted; }
    ParamRow .error { color: $error; padding: 0 0 0 14; height: auto; }
    ParamRow .error.-hidden { display: none; }
    """

    def __init__(self, desc: dict, editable: bool):
        super().__init__(id=f"row-{desc['name']}")
        self.desc = desc
        self.editable = editable

    def compose(self) -> ComposeResult:
        d = self.desc
        lo = "-inf" if d["min"] is None else _fmt(d["min"])
        hi = "inf" if d["max"] is None else _fmt(d["max"])
        rng = "true/false" if d["type"] == "bool" else f"{d['type']} {lo}..{hi}"
        with Horizontal():
            yield Label(d["name"], classes="name")
            yield Input(_fmt(d["value"]), id=f"param-{d['name']}", disabled=not self.editable,
                        tooltip=f"{d['help']} ({rng}, default {_fmt(d['default'])})")
            yield Static(f"{d['help']} [{rng}, default {_fmt(d['default'])}]", classes="help")
        yield Static("", classes="error -hidden")

    def set_value(self, value) -> None:
        inp = self.query_one(Input)
        if not inp.has_focus:
            inp.value = _fmt(value)

    def set_error(self, text: str | None) -> None:
        err = self.query_one(".error", Static)
        inp = self.query_one(Input)
        if text:
            err.update(Text(f"refused: {text}"))
            err.remove_class("-hidden")
            inp.add_class("-invalid")
        else:
            err.update("")
            err.add_class("-hidden")
            inp.remove_class("-invalid")


class PolicyPanel(VerticalScroll):
    DEFAULT_CSS = """
    PolicyPanel { height: 1fr; padding: 0 1; }
    PolicyPanel #policy-line { height: 3; }
    PolicyPanel #policy-line Label { padding: 1 1 0 0; text-style: bold; width: 14; }
    PolicyPanel Select { width: 24; }
    PolicyPanel #policy-doc { color: $text-muted; padding: 0 0 1 0; }
    """

    class Edit(Message):
        def __init__(self, key: str, value: str) -> None:
            super().__init__()
            self.key, self.value = key, value

    class Switch(Message):
        def __init__(self, spec: str) -> None:
            super().__init__()
            self.spec = spec

    def __init__(self, editable: bool = True, **kw):
        super().__init__(**kw)
        self.editable = editable
        self.label = ""
        self._names: tuple = ()
        self._shown: tuple = ("", {})

    def compose(self) -> ComposeResult:
        with Horizontal(id="policy-line"):
            yield Label("policy")
            yield Select([(n, n) for n in POLICIES], value=DEFAULT_POLICY, allow_blank=False, id="policy-select",
                         disabled=not self.editable)
        yield Static("", id="policy-doc")
        yield Vertical(id="param-rows")

    def show(self, state) -> None:
        label, params = state.policy, state.params
        if not label or (label, params) == self._shown:
            return
        self._shown = (label, dict(params))
        try:
            desc = make_policy(label, params).describe()
        except PolicyError:
            desc = make_policy(label).describe()
        names = tuple(d["name"] for d in desc)
        if family(label) != family(self.label) or names != self._names:
            self._rebuild(label, desc)
        else:
            for d in desc:
                self.query_one(f"#row-{d['name']}", ParamRow).set_value(d["value"])
        self.label = label

    def _rebuild(self, label: str, desc: list[dict]) -> None:
        sel = self.query_one(Select)
        with self.prevent(Select.Changed):
            sel.value = family(label)
        self.query_one("#policy-doc", Static).update(POLICIES[family(label)].summary)
        rows = self.query_one("#param-rows", Vertical)
        rows.remove_children()
        rows.mount_all([ParamRow(d, self.editable) for d in desc])
        self._names = tuple(d["name"] for d in desc)

    def refuse(self, key: str, reason: str) -> None:
        for row in self.query(ParamRow):
            if row.desc["name"] == key:
                row.set_error(reason)

    def clear_error(self, key: str) -> None:
        for row in self.query(ParamRow):
            if row.desc["name"] == key:
                row.set_error(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        key = (event.input.id or "").removeprefix("param-")
        if key:
            self.post_message(self.Edit(key, event.value))

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        name = str(event.value)
        if not self.label or name == family(self.label):
            return  # the widget settling on the policy in force, not a user's choice
        self.post_message(self.Switch(f"static:{DEFAULT_STATIC_K}" if name == "static" else name))
