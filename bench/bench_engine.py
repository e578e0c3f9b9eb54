"""Print records per second for unwrap + detection over CloudTrail files.

Usage: python bench/bench_engine.py [--policy FILE] [--rounds N] [PATH ...]
(defaults: examples/policy.yaml over examples/inputs). Reads every file once, then
times decoding and detection only; no store, no I/O in the timed part.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from detectors.engine import DetectionEngine
from detectors.third_parties import load_policy
from service.envelopes import unwrap
from service.inputs import iter_input_files, read_input

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[EXAMPLES / "inputs"])
    parser.add_argument("--policy", type=Path, default=EXAMPLES / "policy.yaml")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    policy = load_policy(args.policy)
    payloads = [read_input(path) for path in iter_input_files(args.paths)]
    records = sum(len(unwrap(payload).records) for payload in payloads)

    unwrap_seconds = _time(lambda: [unwrap(p) for p in payloads], args.rounds)
    decoded = [r for p in payloads for r in unwrap(p).records]

    def detect() -> None:
        # One batch: process, then take the state changes a checkpoint would write.
        engine = DetectionEngine(policy)
        for record in decoded:
            engine.process(record)
        engine.drain()
        engine.take_changes()

    detect_seconds = _time(detect, args.rounds)
    total = records * args.rounds
    print(f"files: {len(payloads)}  records: {records}  rounds: {args.rounds}")
    print(f"unwrap:           {total / unwrap_seconds:12,.0f} records/s")
    print(f"detect:           {total / detect_seconds:12,.0f} records/s")
    both = unwrap_seconds + detect_seconds
    print(f"unwrap + detect:  {total / both:12,.0f} records/s")


def _time(work: Callable[[], object], rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        work()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
