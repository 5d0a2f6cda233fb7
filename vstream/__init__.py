"""vstream: streaming video analytics with GLM-4.5V."""

__version__ = "0.1.0"
