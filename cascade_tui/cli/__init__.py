"""Command line: ``cascade-tui run | inspect | bench`` (one module per command)."""

from cascade_tui.cli import bench, inspect, run  # noqa: F401  (each registers its command)
from cascade_tui.cli.app import app, main

__all__ = ["app", "main"]
