"""Command line: ``cascade-tui run | chat | replay | sessions | inspect | bench`` (one module per
command)."""

from cascade_tui.cli import bench, chat, inspect, replay, run, sessions  # noqa: F401  (each registers itself)
from cascade_tui.cli.app import app, main

__all__ = ["app", "main"]
