"""Benchmarks of phonehome: they measure and print, they never assert. ``python -m bench`` runs them all."""
