"""The main screen: chat on the left, the live panels on the right (utility, K and accepted tokens,
phases, stats, and tabs for the experts, the transition log and the policy).

All widgets change here, in message handlers: a batch of events is folded into the
:class:`ViewState` and every visible panel redraws once. On a small terminal (under 110 columns)
the panels fold away behind F2 and the status line under the chat keeps the essentials.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, LoadingIndicator, Static, TabbedContent, TabPane

from cascade_tui.tui.messages import Events, Failed, Loading, Ready, Reset, TurnDone
from cascade_tui.tui.sources import Source
from cascade_tui.tui.state import ViewState
from cascade_tui.tui.widgets.session_info import SessionInfo
from cascade_tui.tui.widgets import (
    ChatView,
    ExpertHeatmap,
    KChart,
    PhaseStrip,
    PolicyPanel,
    StatsPanel,
    StatusLine,
    TransitionLog,
    UtilityChart,
)

NARROW = 110  # columns below which the panels fold away behind F2
SHORT = 34  # rows below which the charts shrink


class MainScreen(Screen):
    BINDINGS = [
        Binding("escape", "stop", "Stop", tooltip="Stop the answer at the next iteration"),
        Binding("f1", "app.help", "Help"),
        Binding("f2", "toggle_panels", "Panels", tooltip="Show the chat or the panels (small terminals)"),
        Binding("f3", "toggle_heatmap", "Heatmap", tooltip="Experts of the last iteration or a rolling window"),
        Binding("f4", "policy", "Policy", tooltip="Edit the policy and its parameters"),
        Binding("ctrl+l", "clear", "Clear", tooltip="Clear the conversation"),
        Binding("ctrl+t", "app.toggle_theme", "Theme"),
        Binding("ctrl+q", "app.quit", "Quit"),
    ]

    DEFAULT_CSS = """
    MainScreen #body { height: 1fr; }
    MainScreen #chat-col { width: 1fr; min-width: 40; }
    MainScreen #panels { width: 1fr; min-width: 56; }
    MainScreen #chat { border: round $primary 40%; border-title-color: $text-muted; }
    MainScreen #prompt { margin: 0 0; }
    MainScreen .panel { border: round $primary 30%; border-title-color: $text-muted;
                        border-subtitle-color: $text-muted; }
    MainScreen #stats { height: 4; }
    MainScreen #utility { height: 10; }
    MainScreen #kchart { height: 7; }
    MainScreen #phases { height: 4; }
    MainScreen #tabs { height: 1fr; min-height: 8; }
    MainScreen #loading { height: 5; border: round $accent; padding: 0 1; }
    MainScreen #loading.-hidden { display: none; }
    MainScreen #loading LoadingIndicator { height: 1; }
    MainScreen #loading.-failed { border: round $error; }
    MainScreen #loading.-failed LoadingIndicator { display: none; }
    MainScreen.-short #utility { height: 8; }
    MainScreen.-short #kchart { height: 5; }
    MainScreen.-short #tabs { height: 14; }
    MainScreen.-narrow #panels { display: none; }
    MainScreen.-narrow.-panels #panels { display: block; width: 100%; }
    MainScreen.-narrow.-panels #chat-col { display: none; }
    """

    def __init__(self, source: Source, title: str = ""):
        super().__init__()
        self.source = source
        self.state = ViewState()
        self.title_text = title
        self._dirty = False
        self._note = ""

    # -- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        with Horizontal(id="body"):
            with Vertical(id="chat-col"):
                with Vertical(id="loading"):
                    yield Static("starting...", id="loading-text")
                    yield LoadingIndicator()
                chat = ChatView(id="chat")
                chat.border_title = "chat"
                chat.border_subtitle = "green: text from accepted drafts"
                yield chat
                yield StatusLine(id="status")
                yield from self.bottom()
            with VerticalScroll(id="panels"):
                stats = StatsPanel(id="stats", classes="panel")
                stats.border_title = "speed"
                yield stats
                util = UtilityChart(id="utility", classes="panel")
                util.border_title = "utility U = speedup the policy predicts (red line: U = 1)"
                yield util
                k = KChart(id="kchart", classes="panel")
                k.border_title = "K per iteration: accepted (green) / rejected (red)"
                yield k
                ph = PhaseStrip(id="phases", classes="panel")
                ph.border_title = "phase per iteration"
                yield ph
                with TabbedContent(id="tabs", initial="tab-experts"):
                    with TabPane("Experts", id="tab-experts"):
                        yield ExpertHeatmap(id="heatmap")
                    with TabPane("Log", id="tab-log"):
                        yield TransitionLog(id="log")
                    with TabPane("Policy", id="tab-policy"):
                        yield PolicyPanel(editable=self.source.live, id="policy")
                    with TabPane("Session", id="tab-session"):
                        with VerticalScroll():
                            yield SessionInfo(id="session-info")
        yield Footer()

    def bottom(self) -> ComposeResult:
        """The row under the chat: the prompt (a replay shows its controls instead)."""
        yield Input(placeholder="Type a prompt and press Enter (Esc stops an answer)", id="prompt",
                    disabled=not self.source.live)

    def on_mount(self) -> None:
        self.title = "cascade-tui"
        self.sub_title = self.title_text
        self._layout_for(self.size.width, self.size.height)
        self.source.start(self)
        self.set_interval(1 / 15, self._redraw)
        if self.source.live:
            self.query_one("#prompt", Input).focus()

    def on_resize(self, event) -> None:
        self._layout_for(event.size.width, event.size.height)

    def _layout_for(self, width: int, height: int) -> None:
        self.set_class(width < NARROW, "-narrow")
        self.set_class(height < SHORT, "-short")

    # -- messages from the source ----------------------------------------------------------------
    @on(Loading)
    def _loading(self, msg: Loading) -> None:
        self.query_one("#loading-text", Static).update(msg.text)

    @on(Ready)
    def _ready(self, msg: Ready) -> None:
        self.state.set_header(msg.header)
        self.query_one("#loading").add_class("-hidden")
        model = (msg.header.get("model") or {}).get("path") or "?"
        draft = (msg.header.get("draft") or {}).get("name") or "?"
        path = getattr(self.source, "record_path", None)
        self.sub_title = self.title_text or f"{Path(model).name} + {Path(draft).name if '/' in draft else draft}"
        if path is not None:
            self.sub_title += f"  ·  recording {path}"
        for note in msg.notes:
            self.notify(note, severity="warning")
        self.query_one(SessionInfo).show_header(msg.header, str(path) if path else None)
        self._dirty = True

    @on(Reset)
    def _reset(self, msg: Reset) -> None:
        """Start over from an empty state (a replay going back); the events follow."""
        self.state = ViewState(msg.header)
        self._dirty = True

    @on(Failed)
    def _failed(self, msg: Failed) -> None:
        box = self.query_one("#loading")
        if not self.source.ready:  # loading failed: say so where the spinner was
            box.remove_class("-hidden")
            box.add_class("-failed")
            self.query_one("#loading-text", Static).update(f"cannot start: {msg.text}\n(ctrl+q quits)")
        self.notify(msg.text, severity="error", timeout=10)

    @on(Events)
    def _events(self, msg: Events) -> None:
        self.state.apply_all(msg.events)
        for ev in msg.events:
            if ev.type == "error":
                self.notify(ev.message, severity="error", timeout=8)
            elif ev.type == "param" and not ev.ok:
                self.query_one(PolicyPanel).refuse(ev.key, ev.error)
        self._dirty = True

    @on(TurnDone)
    def _turn_done(self, msg: TurnDone) -> None:
        self._note = ""
        self._dirty = True

    def _redraw(self) -> None:
        """At most ~15 times a second, and only when something changed."""
        if not self._dirty:
            return
        self._dirty = False
        s = self.state
        self.query_one(StatusLine).show(s, self._note)
        if not (self.has_class("-narrow") and self.has_class("-panels")):
            self.query_one(ChatView).show(s)
        if not (self.has_class("-narrow") and not self.has_class("-panels")):
            for w in (StatsPanel, UtilityChart, KChart, PhaseStrip):
                self.query_one(w).show(s)
            self._show_tab()

    TAB_WIDGETS = {"tab-experts": ExpertHeatmap, "tab-log": TransitionLog, "tab-policy": PolicyPanel}

    def _show_tab(self) -> None:
        """Only the visible tab redraws (the others catch up when shown)."""
        active = self.query_one(TabbedContent).active
        w = self.TAB_WIDGETS.get(active)
        if w is not None:
            self.query_one(w).show(self.state)

    @on(TabbedContent.TabActivated)
    def _tab(self, event) -> None:
        self._show_tab()

    # -- user actions --------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    def _submit(self, event: Input.Submitted) -> None:
        text = event.value
        if not text.strip():
            return
        problem = self.source.submit(text)
        if problem:
            self.notify(problem, severity="warning")
            return
        event.input.value = ""
        self._note = "Esc stops"
        self._dirty = True

    def action_stop(self) -> None:
        if self.source.running:
            self.source.cancel()
            self._note = "stopping at the next iteration..."
            self._dirty = True

    def action_toggle_panels(self) -> None:
        self.toggle_class("-panels")
        self._dirty = True
        self._redraw()

    def action_toggle_heatmap(self) -> None:
        hm = self.query_one(ExpertHeatmap)
        hm.window = not hm.window

    def action_policy(self) -> None:
        if self.has_class("-narrow"):
            self.add_class("-panels")
        self.query_one(TabbedContent).active = "tab-policy"
        self._dirty = True

    def action_clear(self) -> None:
        if self.source.running:
            self.notify("stop the answer first (Esc)", severity="warning")
            return
        self._apply_now(self.source.clear())

    @on(PolicyPanel.Edit)
    def _edit(self, msg: PolicyPanel.Edit) -> None:
        panel = self.query_one(PolicyPanel)
        try:
            self.source.check_param(msg.key, msg.value)
        except Exception as e:  # PolicyError: refused in place, with the reason
            panel.refuse(msg.key, str(e))
            return
        panel.clear_error(msg.key)
        self._apply_now(self.source.set_param(msg.key, msg.value))
        if self.source.running:
            self.notify(f"{msg.key} = {msg.value}: applies at the next iteration", timeout=3)

    @on(PolicyPanel.Switch)
    def _switch(self, msg: PolicyPanel.Switch) -> None:
        self.switch_policy(msg.spec)

    def switch_policy(self, spec: str) -> None:
        if not self.source.live:
            return
        self._apply_now(self.source.switch_policy(spec))
        if self.source.running:
            self.notify(f"policy {spec}: applies at the next iteration", timeout=3)

    def _apply_now(self, events: list) -> None:
        """Events an idle session produced at once (they never go through a worker)."""
        if events:
            self.post_message(Events(events))
