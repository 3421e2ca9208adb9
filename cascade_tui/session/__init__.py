"""Session recordings (DESIGN section 4): one JSON object per line, header first, flushed per event."""

from cascade_tui.session.recorder import FORMAT, VERSION, Recorder, default_session_path

__all__ = ["FORMAT", "VERSION", "Recorder", "default_session_path"]
