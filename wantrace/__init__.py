"""wantrace: what does a Wan2.1 generation cost, exactly, where, and why."""

__version__ = "0.1.0"
