"""Trailwarden: third-party access monitoring for AWS CloudTrail."""

__version__ = "0.1.0"
