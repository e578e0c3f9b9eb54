"""IAM-style action patterns (`s3:List*`, `*`), compiled once and matched fast.

Matching is case-insensitive, as IAM's is; `*` matches any run of characters and
`?` any single character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class ActionMatcher:
    """Matches `service:Action` names against a fixed set of IAM patterns."""

    __slots__ = ("_each", "_regex", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        parts = [_translate(p) for p in self.patterns]
        self._each = tuple(
            (p, re.compile(part, re.IGNORECASE))
            for p, part in zip(self.patterns, parts, strict=True)
        )
        # An empty set matches nothing: "(?!)" never succeeds.
        self._regex = re.compile("|".join(parts) or "(?!)", re.IGNORECASE)

    def matches(self, action: str) -> bool:
        return self._regex.fullmatch(action) is not None

    def first_match(self, action: str) -> str | None:
        """The first pattern that matches `action`, for the finding's details."""
        for pattern, regex in self._each:
            if regex.fullmatch(action) is not None:
                return pattern
        return None


def _translate(pattern: str) -> str:
    escaped = re.escape(pattern)
    return escaped.replace(r"\*", ".*").replace(r"\?", ".")
