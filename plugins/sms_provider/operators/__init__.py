"""Operators: each one wires a hook, the data root and a pure data-plane step."""
