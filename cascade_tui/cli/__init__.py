"""Command line: ``cascade-tui run | chat | inspect | bench`` (one module per command)."""

from cascade_tui.cli import bench, chat, inspect, run  # noqa: F401  (each registers its command)
from cascade_tui.cli.app import app, main

__all__ = ["app", "main"]
