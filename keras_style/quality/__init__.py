"""Measuring results: evaluation against references, per-style reports, training curves."""
