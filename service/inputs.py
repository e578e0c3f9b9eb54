"""Find and read the CloudTrail files a replay runs over.

Folders are walked recursively in sorted order, so an S3 bucket layout replays in
time order; hidden files and folders are skipped, nothing is skipped by extension.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from service.envelopes import MAX_FILE_BYTES

__all__ = ["iter_input_files", "read_input"]


def iter_input_files(paths: Sequence[Path]) -> Iterator[Path]:
    """Yield every file under `paths`, in the order given, folders sorted.

    A path given explicitly is yielded even when its name starts with a dot.
    Raises FileNotFoundError, naming the path, before yielding anything when one
    of `paths` does not exist.
    """
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")

    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            yield from _walk(path, seen)
        else:
            yield path


def read_input(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The content of one input file, as bytes for `unwrap`.

    Reads at most one byte more than `max_bytes`, enough for `unwrap` to report
    a huge file as too large without holding all of it in memory.
    """
    with path.open("rb") as file:
        return file.read(max_bytes + 1)


def _walk(folder: Path, seen: set[Path]) -> Iterator[Path]:
    # A symlink back to a parent folder would otherwise recurse forever.
    real = folder.resolve()
    if real in seen:
        return
    seen.add(real)

    for child in sorted(folder.iterdir(), key=lambda child: child.name):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            yield from _walk(child, seen)
        elif child.is_file():
            yield child
