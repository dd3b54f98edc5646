"""Bring-up: the node graph (defined once), a pip-only runner for it, and the demo."""
