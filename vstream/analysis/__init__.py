"""Turning raw GLM-4.5V text into validated results (`results`) via a tolerant parser (`parse`)."""
