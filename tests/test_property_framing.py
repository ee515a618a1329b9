"""MLLP framing under hypothesis: any stream, cut into reads anywhere, decodes to the same frames.

The decoder is checked against a byte-at-a-time model of the rules in mllp/framing.py (bytes
outside a frame are ignored, a start block inside a frame abandons it, an end block ends it, a
frame over the limit keeps only its head), whatever the stream holds and however it is cut.
"""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from mwlbroker.mllp.framing import END_BLOCK, START_BLOCK, FrameDecoder, frame
from tests.support.properties import examples

VT, FS = START_BLOCK[0], END_BLOCK[0]

# Bytes that matter to the framing come often; the rest stands for any other byte.
wire_bytes = st.lists(
    st.one_of(st.sampled_from([VT, FS, 0x0D, 0x0A]), st.integers(0, 255)), max_size=400
).map(bytes)
payload_bytes = st.binary(max_size=300).map(
    lambda data: data.replace(START_BLOCK, b"").replace(END_BLOCK, b"")
)
junk_bytes = st.binary(max_size=40).map(lambda data: data.replace(START_BLOCK, b""))


def model(stream: bytes, limit: int) -> tuple[list[tuple[bytes, bool, int]], bytes]:
    """The frames (payload, truncated, size) and pending bytes, read one byte at a time."""
    frames: list[tuple[bytes, bool, int]] = []
    inside, buffer = False, bytearray()
    for byte in stream:
        if byte == VT:
            inside, buffer = True, bytearray()  # a start block, or one that abandons a frame
        elif not inside:
            continue  # junk outside any frame
        elif byte == FS:
            frames.append((bytes(buffer[:limit]), len(buffer) > limit, len(buffer)))
            inside = False
        else:
            buffer.append(byte)
    return frames, bytes(buffer[:limit]) if inside else b""


def decode(chunks: list[bytes], limit: int) -> tuple[list[tuple[bytes, bool, int]], bytes]:
    decoder = FrameDecoder(max_message_bytes=limit)
    frames = []
    for chunk in chunks:
        frames.extend((f.payload, f.truncated, f.size) for f in decoder.feed(chunk))
    return frames, decoder.pending


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@examples(300)
@given(stream=wire_bytes, cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_property_any_split_of_any_stream_gives_the_model_frames(stream, cuts):
    limit = 64
    expected = model(stream, limit)
    assert decode([stream], limit) == expected
    assert decode(split(stream, cuts), limit) == expected


@examples(200)
@given(
    messages=st.lists(st.tuples(junk_bytes, payload_bytes), max_size=8),
    tail=junk_bytes,
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
)
def test_property_junk_between_frames_is_ignored(messages, tail, cuts):
    stream = b"".join(junk + frame(payload) for junk, payload in messages) + tail
    frames, pending = decode(split(stream, cuts), limit=1024)
    assert [payload for payload, _, _ in frames] == [payload for _, payload in messages]
    assert not any(truncated for _, truncated, _ in frames)
    assert pending == b""


@examples(200)
@given(
    payloads=st.lists(payload_bytes, min_size=1, max_size=6),
    limit=st.integers(1, 200),
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
)
def test_property_max_size_keeps_only_the_head_and_counts_the_rest(payloads, limit, cuts):
    stream = b"".join(frame(payload) for payload in payloads)
    decoder = FrameDecoder(max_message_bytes=limit)
    frames = [f for chunk in split(stream, cuts) for f in decoder.feed(chunk)]
    assert [f.payload for f in frames] == [payload[:limit] for payload in payloads]
    assert [f.truncated for f in frames] == [len(payload) > limit for payload in payloads]
    assert [f.size for f in frames] == [len(payload) for payload in payloads]
    # Memory stays bounded whatever was sent: nothing held beyond the limit.
    assert all(len(f.payload) <= limit for f in frames)


@examples(50)
@given(size=st.integers(0, 1_000_000), limit=st.integers(1, 4096), read=st.integers(512, 65536))
def test_property_an_endless_frame_never_holds_more_than_the_limit(size, limit, read):
    decoder = FrameDecoder(max_message_bytes=limit)
    decoder.feed(START_BLOCK)
    chunk = b"x" * read
    fed = 0
    while fed < size:
        assert decoder.feed(chunk[: size - fed]) == []
        fed += min(read, size - fed)
        assert len(decoder.pending) <= limit
    assert decoder.pending == b"x" * min(size, limit)
