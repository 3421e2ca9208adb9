"""The session's header on screen: model, drafter, policy and its parameters, machine, recording."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from cascade_tui.machine import offload_device, where_text


def _name(p) -> str:
    return Path(str(p)).name if p else "?"


def summary_line(header: dict) -> Text:
    """One line: model (arch, layers, experts), drafter, policy, machine."""
    m = header.get("model") or {}
    d = header.get("draft") or {}
    pol = header.get("policy") or {}
    mach = header.get("machine") or {}
    experts = f", {m.get('n_expert')}x top-{m.get('n_expert_used')}" if m.get("n_expert") else ""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(_name(m.get("path")), style="bold")
    t.append(f" ({m.get('arch', '?')}, {m.get('n_layer', '?')} layers{experts})", style="dim")
    name = d.get("name") or "?"
    t.append("  drafter ", style="dim")
    t.append(_name(name) if "/" in str(name) or str(name).endswith(".gguf") else str(name))
    t.append("  policy ", style="dim")
    t.append(str(pol.get("name", "?")))
    t.append(f"  {where_text(mach)}", style="dim")
    return t


class SessionInfo(Static):
    DEFAULT_CSS = """
    SessionInfo { height: auto; padding: 0 1; }
    """

    def show_header(self, header: dict, path: str | None = None) -> None:
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold", no_wrap=True)
        t.add_column()
        for row in header_rows(header, path):
            t.add_row(*row)
        self.update(t)


def header_rows(header: dict, path: str | None = None) -> list[tuple[str, str]]:
    """The session panel's rows: model, drafter, policy, generation, machine, GPU offload,
    recording."""
    m = header.get("model") or {}
    d = header.get("draft") or {}
    pol = header.get("policy") or {}
    mach = header.get("machine") or {}
    gen = header.get("generation") or {}
    rows = [
        ("model", f"{m.get('path', '?')}\n{m.get('arch', '?')}, {m.get('n_layer', '?')} layers, "
                  f"{m.get('n_expert', 0)} experts top-{m.get('n_expert_used', 0)}, "
                  f"sha256 {str(m.get('sha256') or m.get('fingerprint') or '?')[:16]}"),
        ("drafter", str(d.get("name", "?")) + (f"\n{d.get('arch')}, {d.get('n_layer')} layers" if d.get("arch") else "")),
        ("policy", f"{pol.get('name', '?')}\n" + ", ".join(f"{k}={v}" for k, v in (pol.get("params") or {}).items())),
    ]
    if gen:
        rows.append(("generation", ", ".join(f"{k}={v}" for k, v in gen.items())))
    rows.append(("machine", f"{mach.get('cpu', '?')}\n{mach.get('cores', '?')} cores, {mach.get('threads', '?')} threads, "
                            f"{mach.get('platform', '')}"))
    dev = offload_device(mach)
    if dev is not None:
        rows.append(("offload", dev + (f"\n{mach['offloaded_layers']} layers" if mach.get("offloaded_layers") else "")))
    rows.append(("recorded", f"{header['created']} by cascade-tui {header.get('tool_version', '?')}"
                 if header.get("created") else "no (--no-record)"))
    if path:
        rows.append(("file", path))
    return rows
