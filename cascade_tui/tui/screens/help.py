"""F1: what every panel means and every key does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# cascade-tui

A drafter proposes **K** tokens; the MoE target verifies them in one batch. On an MoE the K + 1
tokens route to the *union* of their experts, so a verify can read several times the expert
weights of a plain step. The **utility** U = (tokens per iteration) / (iteration time / time of a
K = 0 iteration) is the speedup speculation gives: below 1 it loses.

## Panels

- **speed**: tokens/s, the estimated speedup over no speculation (tokens/s x the measured time of
  a K = 0 iteration), acceptance (accepted / drafted), mean K, iterations, tokens.
- **utility**: U per iteration with the U = 1 line in red; beside it the U the policy measured for
  each K it tested (the `│` marks U = 1).
- **K per iteration**: each column is one iteration, K cells high: green = accepted, red = rejected.
- **phase per iteration**: base (measuring a K = 0 step), test (trying K values), set (running the
  chosen K), off (speculation switched off, backing off before the next test).
- **Experts**: MoE layers x experts; colour = tokens of the verify batch routed there (F3: last
  iteration / rolling window); `u=` unique experts per layer and the weights read relative to a
  one-token step.
- **Log**: every phase change with the policy's reason, parameter changes, turns, errors.
- **Policy**: switch policy and edit any parameter while it generates (Enter applies it at the next
  iteration; a refused value stays in place with the reason).
- **Session**: the model, drafter, policy and its parameters, the machine, the recording's file.

In a replay (`cascade-tui replay FILE`) the same panels play back a recording: space play/pause,
+/- speed, arrows one iteration back/forward, g seek to an iteration (120) or a time (3.5s),
home/end.

In the chat, **green** text came from accepted drafts; plain text the target produced itself.

## Keys

| key | |
|---|---|
| Enter | send the prompt |
| Esc | stop the answer at the next iteration |
| F1 | this help |
| F2 | chat / panels (small terminals) |
| F3 | heatmap: last iteration / rolling window |
| F4 | the policy panel |
| Ctrl+L | clear the conversation |
| Ctrl+T | light / dark theme |
| Ctrl+P | command palette |
| Ctrl+Q | quit (the session is recorded) |
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,f1,q", "app.pop_screen", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen VerticalScroll { width: 90%; max-width: 100; height: 90%; border: round $accent;
                                background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)
