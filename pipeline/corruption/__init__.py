"""Corruption robustness: readers for corrupted test sets."""
