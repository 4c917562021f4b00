"""henshin (変身): a real-time face video filter engine."""

__version__ = "0.1.0"
