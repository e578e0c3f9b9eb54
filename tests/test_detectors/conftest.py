"""Fixtures for detector tests: real corpus records, policies, and a detect helper."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from detectors.attribution import Attributor
from detectors.detector import Detector, Finding
from detectors.third_parties import Policy, load_policy, parse_policy
from service.envelopes import unwrap
from service.inputs import iter_input_files, read_input
from service.records import CloudTrailRecord, record_from_dict

DATA = Path(__file__).parent.parent / "data" / "detectors"
CORPUS = Path(__file__).parents[3] / "shared" / "corpus"
CORPUS_POLICY = Path(__file__).parents[1] / "data" / "corpus-policy.yaml"

RawRecord = Callable[..., dict[str, Any]]
LoadRecord = Callable[..., CloudTrailRecord]
Detect = Callable[
    [type[Any], dict[str, Any], Sequence[CloudTrailRecord]], list[Finding]
]


def _raw_records(name: str) -> list[dict[str, Any]]:
    text = (DATA / name).read_text(encoding="utf-8")
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    return data if isinstance(data, list) else [data]


@pytest.fixture
def raw_record() -> RawRecord:
    """A fresh, mutable copy of one copied corpus record, to derive variants from."""

    def load(name: str, index: int = 0, **changes: Any) -> dict[str, Any]:
        data = copy.deepcopy(_raw_records(name)[index])
        data.update(changes)
        return data

    return load


@pytest.fixture
def load_record(raw_record: RawRecord) -> LoadRecord:
    """One copied corpus record as a CloudTrailRecord; keyword args replace fields."""

    def load(name: str, index: int = 0, **changes: Any) -> CloudTrailRecord:
        return record_from_dict(raw_record(name, index, **changes))

    return load


@pytest.fixture
def detect() -> Detect:
    """Attribute `records` in order, then run one detector on the last of them."""

    def run(
        detector_type: type[Any],
        policy: dict[str, Any],
        records: Sequence[CloudTrailRecord],
    ) -> list[Finding]:
        built = parse_policy(policy, "<test>")
        attributor = Attributor(built)
        detector: Detector = detector_type(built)
        attribution = None
        for record in records:
            attribution = attributor.attribute(record)
        assert attribution is not None
        return detector.check(records[-1], attribution)

    return run


@pytest.fixture(scope="session")
def corpus_records() -> list[CloudTrailRecord]:
    """Every record of the shared corpus, in file order (skips without it)."""
    if not CORPUS.is_dir():
        pytest.skip(f"no shared corpus at {CORPUS}")
    files = iter_input_files([CORPUS])
    return [r for path in files for r in unwrap(read_input(path)).records]


@pytest.fixture(scope="session")
def corpus_policy() -> Policy:
    """The registry that makes the corpus's cross-account activity third-party."""
    return load_policy(CORPUS_POLICY)
