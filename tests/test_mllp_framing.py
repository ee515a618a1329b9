"""MLLP framing as senders put it on the wire (no database needed)."""

from __future__ import annotations

from mwlbroker.mllp.framing import FrameDecoder, frame

MESSAGE = b"MSH|^~\\&|RIS|H|MWL|R|20261127||ORM^O01|1|P|2.3.1\rPID|1||X\r"


def payloads(decoder: FrameDecoder, *chunks: bytes) -> list[bytes]:
    result = []
    for chunk in chunks:
        result.extend(f.payload for f in decoder.feed(chunk))
    return result


def test_one_frame_in_one_read():
    assert payloads(FrameDecoder(), frame(MESSAGE)) == [MESSAGE]


def test_frame_split_at_every_possible_byte():
    wire = frame(MESSAGE)
    for cut in range(1, len(wire)):
        assert payloads(FrameDecoder(), wire[:cut], wire[cut:]) == [MESSAGE], cut


def test_frame_fed_one_byte_at_a_time():
    wire = frame(MESSAGE) * 2
    assert payloads(FrameDecoder(), *(wire[i : i + 1] for i in range(len(wire)))) == [MESSAGE] * 2


def test_several_frames_in_one_read():
    assert payloads(FrameDecoder(), frame(b"A") + frame(b"B") + frame(b"C")) == [b"A", b"B", b"C"]


def test_bytes_before_the_start_block_are_skipped_and_counted():
    decoder = FrameDecoder()
    assert payloads(decoder, b"\r\nnoise" + frame(MESSAGE)) == [MESSAGE]
    assert decoder.discarded == len(b"\r\nnoise")


def test_end_block_without_trailing_cr_still_ends_the_frame():
    assert payloads(FrameDecoder(), b"\x0bA\x1c\x0bB\x1c\r") == [b"A", b"B"]


def test_oversize_frame_keeps_only_its_head_and_the_next_frame_survives():
    decoder = FrameDecoder(max_message_bytes=1024)
    big = b"MSH|" + b"x" * 100_000
    frames = []
    for i in range(0, len(frame(big)), 4096):
        frames.extend(decoder.feed(frame(big)[i : i + 4096]))
    frames.extend(decoder.feed(frame(MESSAGE)))
    assert [f.truncated for f in frames] == [True, False]
    assert frames[0].payload == big[:1024]
    assert frames[0].size == len(big)
    assert frames[1].payload == MESSAGE


def test_unterminated_frame_is_pending_until_the_end_block():
    decoder = FrameDecoder()
    assert payloads(decoder, b"\x0bMSH|partial") == []
    assert decoder.pending == b"MSH|partial"
    assert payloads(decoder, b" rest\x1c\r") == [b"MSH|partial rest"]
    assert decoder.pending == b""


def test_new_start_block_inside_a_frame_abandons_the_broken_one():
    assert payloads(FrameDecoder(), b"\x0bbroken\x0bgood\x1c\r") == [b"good"]
