"""Model helpers for vstream (GLM-4.5V loading and a tiny offline test checkpoint)."""
