"""The conversation: each turn shows what the user asked and the streamed answer, in which
text that came from accepted drafts is coloured (green) and text the target produced itself is
plain."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from cascade_tui.tui.widgets.palette import DRAFT_TEXT

END_NOTES = {"eos": "", "max_tokens": "token limit reached", "cancelled": "stopped", "interrupted": "interrupted",
             "context": "context full", "error": "failed", "closed": "closed"}


class TurnView(Static):
    DEFAULT_CSS = """
    TurnView { padding: 0 1 1 1; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.key = None

    def show_turn(self, turn, running: bool) -> None:
        key = (turn.message, len(turn.segments), len(turn.text), turn.end_reason, running)
        if key == self.key:
            return
        self.key = key
        t = Text()
        t.append("› ", style="bold cyan")
        t.append(turn.message.rstrip("\n") or "(continue)", style="bold")
        t.append("\n")
        for text, from_draft in turn.segments:
            t.append(text, style=DRAFT_TEXT if from_draft else "")
        if running:
            t.append("▌", style="blink")
        note = END_NOTES.get(turn.end_reason, turn.end_reason)
        if note:
            t.append(f"\n[{note}]", style="dim italic")
        self.update(t)


class ChatView(VerticalScroll):
    DEFAULT_CSS = """
    ChatView { height: 1fr; }
    """

    def show(self, state) -> None:
        views = list(self.query(TurnView))
        turns = state.chat
        if len(views) > len(turns):  # the conversation was cleared
            for v in views[len(turns):]:
                v.remove()
            views = views[: len(turns)]
        follow = self.scroll_y >= self.max_scroll_y - 1
        for i in range(len(views), len(turns)):
            v = TurnView()
            self.mount(v)
            views.append(v)
        for i, (v, turn) in enumerate(zip(views, turns)):
            v.show_turn(turn, running=state.running and i == len(turns) - 1)
        if follow:
            self.call_after_refresh(self.scroll_end, animate=False)
