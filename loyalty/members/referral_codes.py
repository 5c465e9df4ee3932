"""Referral codes: random, so a member's code tells nothing of anyone else's."""

from __future__ import annotations

import secrets

# No 0/O, 1/I/L: a code is read aloud and typed from a phone.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
LENGTH = 8  # 31**8: about 8.5e11 codes, so guessing one takes a billion tries per member
PATTERN = r"^[A-Za-z0-9]{4,32}$"


def new_code() -> str:
    """A fresh code, drawn from the operating system's random source."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalized(code: str) -> str:
    """The code as stored: people type codes in any case."""
    return code.strip().upper()
