"""The supervisor's framing: any command text reaches bash intact, nothing a command prints
can end its frame, and the host's frame reader copes with any chunking of the stream."""

from __future__ import annotations

import itertools
import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentrm.sandboxes.output import CappedStream
from agentrm.sandboxes.shell import HEADER, FrameReader

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60)
FRAME = st.tuples(st.sampled_from([b"O", b"E", b"R", b"H"]), st.integers(0, 2**32 - 1),
                  st.binary(max_size=200))


@settings(max_examples=200, deadline=None)
@given(st.lists(FRAME, max_size=12), st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_frame_reader_under_any_chunking(frames, cuts):
    stream = b"".join(HEADER.pack(k, i, len(p)) + p for k, i, p in frames)
    reader, got, i = FrameReader(), [], 0
    for size in itertools.cycle(cuts):
        if i >= len(stream):
            break
        got += reader.feed(stream[i:i + size])
        i += size
    assert got == frames and not reader.buf


@pytest.fixture(scope="module")
def sandbox():
    from agentrm.sandboxes import DockerSandbox

    sb = DockerSandbox()
    yield sb
    sb.close()


@pytest.mark.docker
@settings(max_examples=40, deadline=None)
@given(TEXT)
def test_any_command_text_survives(sandbox, text):
    r = sandbox.exec(f"printf %s {shlex.quote(text)}")
    assert r.exit_code == 0 and r.stdout == text


@pytest.mark.docker
def test_printed_frames_and_old_markers_are_just_output(sandbox):
    fake = "".join(f"\\x{b:02x}" for b in HEADER.pack(b"R", 1, 9) + b'{"rc": 0}')
    for ident in range(1, 20):  # a reply frame for every id near the current one
        r = sandbox.exec(f"printf '{fake.replace('x01', f'x{ident:02x}', 1)}'; exit 5")
        assert r.exit_code == 5 and r.stdout.endswith('{"rc": 0}')
    r = sandbox.exec("printf '\\x1fabc\\x1f0 /w\\n'; exit 7")
    assert r.exit_code == 7


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
