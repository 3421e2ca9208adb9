"""`cascade-tui chat` in a real terminal (tmux), on the bundled demo pair, driven with send-keys and
read with capture-pane: what a user types and sees."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from cascade_tui.session import read_session

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (CI installs it)")


# the tmux server (and so the app in it) inherits this environment: pytest's plugins may have set
# COLUMNS / LINES for their own output, which would make the app draw at 80x24 in a 120x36 window
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30, env=ENV).stdout


def wait_screen(name: str, needle: str, timeout: float = 90) -> str:
    t0 = time.monotonic()
    screen = ""
    while time.monotonic() - t0 < timeout:
        screen = tmux("capture-pane", "-p", "-t", name)
        if needle in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never appeared on the screen:\n{screen}")


def test_chat_in_a_real_terminal_on_the_demo_pair(tmp_path):
    name = f"cascade-{uuid.uuid4().hex[:8]}"
    rec = tmp_path / "tmux.cascade.jsonl"
    done = tmp_path / "exit"
    cmd = (f"cd {shlex.quote(str(tmp_path))} && {shlex.quote(sys.executable)} -m cascade_tui chat --threads 1 "
           f"--max-tokens 48 --record {shlex.quote(str(rec))}; echo $? > {shlex.quote(str(done))}; sleep 30")
    tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "36", cmd)
    try:
        wait_screen(name, "Type a prompt")
        wait_screen(name, "target.gguf + draft.gguf")  # the demo pair loaded
        tmux("send-keys", "-t", name, "def fibonacci(n):", "Enter")
        wait_screen(name, "[token limit reached]")
        # the panels refresh on their own timer: give them a moment after the last token
        for part in ("› def fibonacci(n):", "tok/s", "vs no spec", "utility U", "K per iteration", "phase per iteration",
                     "unique experts/layer", "Experts", "Policy"):
            wait_screen(name, part, timeout=10)
        tmux("send-keys", "-t", name, "F1")  # the help screen
        wait_screen(name, "A drafter proposes K tokens")
        tmux("send-keys", "-t", name, "Escape")
        tmux("send-keys", "-t", name, "C-q")
        t0 = time.monotonic()
        while not done.exists() and time.monotonic() - t0 < 30:
            time.sleep(0.2)
        assert done.read_text().strip() == "0"
        after = tmux("capture-pane", "-p", "-t", name)
        assert f"session recorded: {rec}" in after.replace("\n", "")
    finally:
        tmux("kill-session", "-t", name)
    read = read_session(rec)
    assert read.header["model"]["path"].endswith("target.gguf") and read.header["argv"][0] == "chat"
    ends = [e for e in read.events if e.type == "end"]
    assert len(ends) == 1 and ends[0].generated_tokens == 48 and ends[0].text.strip()
