"""Triggers for deferrable waits (FMS template approval)."""
