"""scaffold: generate minimal, correct ML training projects."""

__version__ = "0.1.0"
