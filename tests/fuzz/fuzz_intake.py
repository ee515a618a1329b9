"""A coverage-guided fuzz target (atheris) for everything a message meets before the database.

Bytes go through MLLP framing (cut into reads where the fuzzer says), the header reader, the
HL7 reader, the site's mappings and the ACK builder, exactly as the intake runs them. The only
outcomes allowed are the broker's own refusals (MessageError and its kinds: answered AE or AR);
anything else that escapes is a bug that would cost a sender its ACK.

    pip install atheris
    python tests/fuzz/fuzz_intake.py -max_total_time=600 [CORPUS_DIR]

``one_input`` is also called by tests/test_fuzz_target.py on the sample messages, so the target
itself is checked on every run of the suite, with or without atheris.
"""

from __future__ import annotations

import sys

from mwlbroker.domain.errors import MessageError
from mwlbroker.domain.messages import AckCode
from mwlbroker.hl7v2.ack import build_ack
from mwlbroker.hl7v2.header import read_header
from mwlbroker.hl7v2.reader import parse_message
from mwlbroker.mapping.engine import load_mappings
from mwlbroker.mllp.framing import FrameDecoder

MAPPINGS = load_mappings()
MAX_BYTES = 64 * 1024


def one_input(data: bytes) -> None:
    """Feed ``data`` as an MLLP stream: the first byte says where to cut it into reads."""
    if not data:
        return
    step = data[0] % 32 + 1
    stream = data[1:]
    decoder = FrameDecoder(MAX_BYTES)
    frames = []
    for start in range(0, len(stream), step):
        frames.extend(decoder.feed(stream[start : start + step]))
    assert len(decoder.pending) <= MAX_BYTES
    for received in frames:
        payload = received.payload
        assert len(payload) <= MAX_BYTES
        header = read_header(payload)
        try:
            message = parse_message(payload)
            if MAPPINGS.handles(message.header().type_name):
                MAPPINGS.map(message)
            code = AckCode.ACCEPT
        except MessageError as refused:  # the broker's own answer: stored, answered AE or AR
            code = refused.ack_code
        ack = build_ack(header, code, text="fuzz")
        assert ack.startswith(b"MSH")


def main() -> None:
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
