"""cascade-tui: utility-driven speculative decoding for Mixture-of-Experts LLMs."""

__version__ = "0.1.0"
