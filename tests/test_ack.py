"""ACKs are valid HL7 for the sender's version, as hl7apy's schemas define it."""

from __future__ import annotations

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from mwlbroker.domain.messages import AckCode, HL7ErrorCode
from mwlbroker.hl7v2.ack import build_ack
from mwlbroker.hl7v2.header import MessageHeader, read_header
from mwlbroker.hl7v2.writer import escape


def received(version: str, control_id: str = "CTRL1") -> MessageHeader:
    header = read_header(
        f"MSH|^~\\&|RIS|HOSP|MWL|RAD|20261127||ORM^O01|{control_id}|P|{version}".encode()
    )
    assert header is not None
    return header


@pytest.mark.parametrize(
    "version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8", "2.8.1", "2.8.2"]
)
@pytest.mark.parametrize("code", list(AckCode))
def test_ack_passes_strict_validation(version, code):
    ack = build_ack(
        received(version),
        code,
        text=None if code == AckCode.ACCEPT else "field | with ^ delimiters & more ~ \\ end",
        error_code=HL7ErrorCode.UNKNOWN_KEY_IDENTIFIER,
        location="ORC-2",
    )
    # v2.3 has no MSH-9.3, which hl7apy needs to check a structure strictly.
    level = VALIDATION_LEVEL.TOLERANT if version == "2.3" else VALIDATION_LEVEL.STRICT
    message = parse_message(ack.decode(), validation_level=level)
    assert message.msa.msa_1.value == code.value
    assert message.msa.msa_2.value == "CTRL1"
    assert message.msh.msh_5.value == "RIS" and message.msh.msh_6.value == "HOSP"
    assert message.msh.msh_12.value == version
    if code == AckCode.ACCEPT:
        assert "ERR" not in ack.decode()


@pytest.mark.parametrize(
    "version", ["2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"]
)
def test_err_fields_keep_their_places_in_every_version_from_2_5(version):
    """ERR-1 is empty (withdrawn from v2.7 on), ERR-2 the location, ERR-3 the code, ERR-4 'E'."""
    ack = build_ack(
        received(version), AckCode.REJECT, text="why", error_code=203, location="MSH-12"
    )
    [err] = [s for s in ack.decode().split("\r") if s.startswith("ERR|")]
    fields = err.split("|")
    assert fields[1] == ""
    assert fields[2] == "MSH^1^12"
    assert fields[3].startswith("203^")
    assert fields[4] == "E"
    assert fields[8] == "why"
    msa = next(s for s in ack.decode().split("\r") if s.startswith("MSA|")).split("|")
    # MSA-3 Text Message was withdrawn in v2.7: the text is in ERR-8 alone from then on.
    assert msa[3:] == ([] if version >= "2.7" else ["why"])


def test_free_text_is_escaped_and_reads_back():
    text = "a|b^c&d~e\\f"
    ack = build_ack(received("2.5.1"), AckCode.ERROR, text=text, error_code=207)
    message = parse_message(ack.decode())
    assert escape(text) in ack.decode()
    assert message.err.err_8.to_er7() == escape(text)


def test_unreadable_message_still_gets_an_ack():
    ack = build_ack(None, AckCode.REJECT, text="no MSH", error_code=100)
    assert ack.startswith(b"MSH|^~\\&|MWLBROKER|")
    assert b"\rMSA|AR||no MSH" in ack
