"""The shell framing against real bash: any command text survives quoting, and the end-marker
scanner finds markers however the byte stream is chunked."""

from __future__ import annotations

import itertools
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentrm.sandboxes.output import CappedStream
from agentrm.sandboxes.shell import _Scanner, ansi_c_quote

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60)


@settings(max_examples=60, deadline=None)
@given(TEXT)
def test_ansi_c_quote_round_trips_through_bash(text):
    out = subprocess.run(["bash", "--noprofile", "--norc", "-c", f"printf %s {ansi_c_quote(text)}"],
                         capture_output=True, timeout=10)
    assert out.stdout.decode("utf-8", "surrogateescape") == text


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(1, 40), min_size=1, max_size=30), st.booleans())
def test_scanner_finds_the_marker_under_any_chunking(payload, cuts, death):
    marker, death_marker = b"\x1fabc123\x1f", b"\x1fdead99\x1f"
    payload = payload.replace(b"\x1f", b"")  # output cannot contain the random token anyway
    stream = payload + (death_marker + b"died 3\n" if death else marker + b"0 /w\n") + b"late"
    scanner, out, i = _Scanner(marker, death_marker), b"", 0
    for size in itertools.cycle(cuts):
        out += scanner.feed(stream[i:i + size])
        i += size
        if i >= len(stream):
            break
    assert scanner.done and out == payload
    assert (scanner.which, scanner.trailer) == ((1, b"died 3") if death else (0, b"0 /w"))


def test_scanner_does_not_hold_back_ordinary_output():
    scanner = _Scanner(b"\x1ftoken\x1f")
    assert scanner.feed(b"hello\n") == b"hello\n"
    assert scanner.feed(b"x\x1ftok") == b"x"  # could be the marker: held
    assert scanner.feed(b"en?") == b"\x1ftoken?"


@pytest.mark.parametrize("cap,size", [(1024, 10), (1024, 5000), (4096, 1 << 20)])
def test_capped_stream_keeps_head_and_tail(cap, size):
    data = bytes(i % 251 for i in range(size))
    s = CappedStream(cap)
    for i in range(0, size, 333):
        s.add(data[i:i + 333])
    if size <= cap:
        assert not s.truncated and bytes(s.head + s.tail) == data
    else:
        assert s.truncated and s.dropped == size - cap
        assert bytes(s.head) == data[:len(s.head)] and bytes(s.tail) == data[-len(s.tail):]
