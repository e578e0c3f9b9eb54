"""Tests for finding and reading replay input files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from service.envelopes import unwrap
from service.inputs import iter_input_files, read_input

DATA = Path(__file__).parent.parent / "data" / "envelopes"


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    """An S3 CloudTrail bucket layout, plus files of other names and hidden ones."""
    trail = tmp_path / "AWSLogs" / "111122223333" / "CloudTrail" / "us-east-1"
    for day in ("02", "01"):
        folder = trail / "2024" / "05" / day
        folder.mkdir(parents=True)
        name = f"111122223333_CloudTrail_us-east-1_202405{day}T0000Z_x.json.gz"
        (folder / name).write_bytes(gzip.compress(b'{"Records": []}'))
    (tmp_path / "events.jsonl").write_bytes(b"{}\n")
    (tmp_path / "dump.txt").write_bytes(b"{}")
    (tmp_path / "NOEXT").write_bytes(b"{}")
    (tmp_path / ".hidden.json").write_bytes(b"{}")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config.json").write_bytes(b"{}")
    return tmp_path


def relative(paths: list[Path], root: Path) -> list[str]:
    return [path.relative_to(root).as_posix() for path in paths]


def test_iter_input_files_folder_is_sorted_recursive_without_hidden(
    bucket: Path,
) -> None:
    found = list(iter_input_files([bucket]))

    assert relative(found, bucket) == [
        "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/"
        "111122223333_CloudTrail_us-east-1_20240501T0000Z_x.json.gz",
        "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/02/"
        "111122223333_CloudTrail_us-east-1_20240502T0000Z_x.json.gz",
        "NOEXT",
        "dump.txt",
        "events.jsonl",
    ]


def test_iter_input_files_keeps_argument_order(bucket: Path) -> None:
    paths = [bucket / "events.jsonl", bucket / "NOEXT", bucket / "dump.txt"]

    found = list(iter_input_files(paths))

    assert found == paths


def test_iter_input_files_explicit_hidden_file_is_yielded(bucket: Path) -> None:
    hidden = bucket / ".hidden.json"

    found = list(iter_input_files([hidden]))

    assert found == [hidden]


def test_iter_input_files_missing_path_raises_before_yielding(bucket: Path) -> None:
    missing = bucket / "nope.json"
    files = iter_input_files([bucket / "events.jsonl", missing])

    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        next(files)


def test_iter_input_files_symlink_loop_is_walked_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "trail.json").write_bytes(b"{}")
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)

    found = list(iter_input_files([tmp_path]))

    assert relative(found, tmp_path) == ["a/trail.json"]


def test_iter_input_files_data_folder_finds_every_test_file() -> None:
    found = list(iter_input_files([DATA]))

    assert sorted(found) == sorted(p for p in DATA.iterdir() if p.is_file())


def test_read_input_returns_file_bytes() -> None:
    path = DATA / "aws_ctpl_compact.json.gz"

    content = read_input(path)

    assert content == path.read_bytes()
    assert len(unwrap(content).records) == 6


def test_read_input_huge_file_is_cut_and_reported_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b"[" + b" " * 1000 + b"]")

    content = read_input(path, max_bytes=100)

    assert len(content) == 101
    assert [f.reason for f in unwrap(content, max_bytes=100).failures] == ["too_large"]
