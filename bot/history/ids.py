"""Public investigation ids: short, URL-safe and sortable by creation time (ULID layout).

An id is ``inv_`` followed by 26 Crockford base32 characters: 48 bits of milliseconds since the epoch,
then 80 random bits, so ids sort in the order investigations started.
"""

from __future__ import annotations

import secrets
from datetime import datetime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
INVESTIGATION_ID_PREFIX = "inv_"


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return "".join(reversed(chars))


def new_investigation_id(at: datetime) -> str:
    """Return a fresh id for an investigation that starts at `at` (timezone-aware)."""
    millis = int(at.timestamp() * 1000) & ((1 << 48) - 1)
    return INVESTIGATION_ID_PREFIX + _base32(millis, 10) + _base32(secrets.randbits(80), 16)
