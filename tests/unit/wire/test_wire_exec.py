"""The interactive exec protocol's frames and control messages (cellplane.wire.exec)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cellplane.wire import exec as wire

CHANNELS = st.sampled_from(sorted(wire.CHANNEL_NAMES))


@given(CHANNELS, st.binary(max_size=2048))
def test_a_message_round_trips(channel: int, payload: bytes) -> None:
    message = wire.encode_message(channel, payload)
    assert message[0] == channel
    assert wire.decode_message(message) == (channel, payload)


@given(st.lists(st.tuples(CHANNELS, st.binary(max_size=600)), max_size=8), st.integers(1, 64))
def test_the_frame_reader_cuts_a_stream_however_it_is_split(
    frames: list[tuple[int, bytes]], step: int
) -> None:
    stream = b"".join(wire.pack(c, p) for c, p in frames)
    reader = wire.FrameReader()
    got: list[tuple[int, bytes]] = []
    for start in range(0, len(stream), step):
        got += reader.feed(stream[start : start + step])
    assert got == frames
    assert reader.pending == 0


def test_a_frame_waits_for_its_last_byte() -> None:
    reader = wire.FrameReader()
    frame = wire.pack(wire.STDOUT, b"hello")
    assert reader.feed(frame[:-1]) == []
    assert reader.pending == len(frame) - 1
    assert reader.feed(frame[-1:]) == [(wire.STDOUT, b"hello")]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"", "empty frame"),
        (b"\x07x", "unknown channel 7"),
        (b"\x01" + bytes(wire.MAX_PAYLOAD + 1), "over"),
    ],
)
def test_bad_messages_are_named(message: bytes, error: str) -> None:
    with pytest.raises(wire.ProtocolError, match=error):
        wire.decode_message(message)


def test_bad_frames_are_named() -> None:
    with pytest.raises(wire.ProtocolError, match="unknown channel 9"):
        wire.FrameReader().feed(b"\x09\x00\x00\x00\x00")
    with pytest.raises(wire.ProtocolError, match="over"):
        wire.FrameReader().feed(b"\x01\xff\xff\xff\xff")
    with pytest.raises(wire.ProtocolError, match="over"):
        wire.pack(wire.STDIN, bytes(wire.MAX_PAYLOAD + 1))
    with pytest.raises(wire.ProtocolError, match="unknown channel"):
        wire.encode_message(42, b"")


def test_status_and_resize_round_trip() -> None:
    assert wire.parse_status(wire.status(0)) == wire.ExecStatus(0, None)
    failed = wire.parse_status(wire.status(127, 'exec failed: "x": not found'))
    assert failed == wire.ExecStatus(127, 'exec failed: "x": not found')
    assert wire.parse_status(wire.status(None, "lost")) == wire.ExecStatus(None, "lost")
    assert wire.parse_resize(wire.resize(120, 40)) == (120, 40)
    assert wire.close_stdin() == bytes((wire.STDIN,))


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"nope", "resize: not JSON"),
        (b"[1, 2]", "resize: must be a JSON object"),
        (b'{"cols": 80}', "rows must be an integer"),
        (b'{"cols": true, "rows": 5}', "cols must be an integer"),
        (b'{"cols": 0, "rows": 5}', "cols must be 1-10000"),
        (b'{"cols": 80, "rows": 10001}', "rows must be 1-10000"),
    ],
)
def test_bad_resizes_are_named(payload: bytes, error: str) -> None:
    with pytest.raises(wire.ProtocolError, match=error):
        wire.parse_resize(payload)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b'{"exit_code": "0"}', "exit_code must be an integer"),
        (b'{"exit_code": false}', "exit_code must be an integer"),
        (b'{"exit_code": 1, "error": 5}', "error must be a string"),
    ],
)
def test_bad_statuses_are_named(payload: bytes, error: str) -> None:
    with pytest.raises(wire.ProtocolError, match=error):
        wire.parse_status(payload)
