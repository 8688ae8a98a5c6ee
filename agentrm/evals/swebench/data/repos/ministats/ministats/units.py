"""Parsing human-written quantities."""

import re

_SECONDS = {"h": 3600, "m": 60, "s": 1}


def parse_duration(text):
    """Seconds in a duration such as "90s", "2m" or "1h30m"; a bare number means seconds."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    if not re.fullmatch(r"(?:\d+[hms])+", text):
        raise ValueError(f"not a duration: {text!r}")
    total = 0
    for number, unit in re.findall(r"(\d+)([hms])", text):
        total = int(number) * _SECONDS[unit]
    return total
