"""Detectors for third-party access, and the engine that runs them."""

from detectors.attribution import Attribution, Attributor
from detectors.detector import SEVERITIES, Detector, Finding, Severity
from detectors.engine import DetectionEngine
from detectors.third_parties import (
    DETECTOR_IDS,
    Policy,
    PolicyError,
    ThirdParty,
    empty_policy,
    load_policy,
    parse_policy,
)

__all__ = [
    "DETECTOR_IDS",
    "SEVERITIES",
    "Attribution",
    "Attributor",
    "DetectionEngine",
    "Detector",
    "Finding",
    "Policy",
    "PolicyError",
    "Severity",
    "ThirdParty",
    "empty_policy",
    "load_policy",
    "parse_policy",
]
