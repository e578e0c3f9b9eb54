"""Detectors for third-party access, and the engine that runs them."""
