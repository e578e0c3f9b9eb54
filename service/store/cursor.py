"""Opaque pagination cursors: the last alert sequence number a page showed."""

from __future__ import annotations

import base64
import re

from service.store.errors import InvalidCursor

_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CURSOR_BODY = re.compile(r"seq:([1-9][0-9]{0,18})")
_MAX_SEQ = 2**63 - 1


def encode_cursor(seq: int) -> str:
    """The cursor for the page after the alert with sequence number `seq`."""
    raw = base64.urlsafe_b64encode(f"seq:{seq}".encode("ascii"))
    return raw.rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> int:
    """The sequence number inside `cursor`; raises InvalidCursor for anything else."""
    if not _CURSOR_TEXT.fullmatch(cursor):
        raise InvalidCursor("invalid cursor")
    try:
        body = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        match = _CURSOR_BODY.fullmatch(body.decode("ascii"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor("invalid cursor") from exc

    if match is None or int(match.group(1)) > _MAX_SEQ:
        raise InvalidCursor("invalid cursor")
    return int(match.group(1))
