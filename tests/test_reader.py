"""Reading HL7 the way real senders write it (no database needed)."""

from __future__ import annotations

import pytest

from mwlbroker.domain.errors import MessageRejected
from mwlbroker.hl7v2.header import read_header
from mwlbroker.hl7v2.reader import HL7_NULL, FieldPath, content_digest, parse_message
from tests.support.samples import SAMPLES, sample_files

HEADER = "MSH|^~\\&|RIS|HOSP|MWL|RAD|20261127||ORM^O01|CTL1|P|2.3.1"


def test_sample_messages_all_read_with_their_header():
    for path in sample_files():
        message = parse_message(path.read_bytes())
        header = message.header()
        assert header.control_id, path.name
        assert header.message_type in {"ORM", "OMI", "OMG", "ADT", "SIU"}, path.name


def test_latin1_sample_decodes_names_and_escapes():
    message = parse_message((SAMPLES / "08_orm_o01_latin1_v231.hl7").read_bytes())
    assert message.charset == "8859/1"
    assert message.get("PID-5.1") == "MÜLLER"
    assert message.get("PID-5.2") == "JÖRG"
    assert "ZPI" in message.segment_names


def test_utf8_sample_keeps_characters_outside_latin1():
    message = parse_message((SAMPLES / "10_omi_o23_nw_v251.hl7").read_bytes())
    assert message.codec == "utf-8"
    assert message.get("PID-5.1") == "García López"
    assert "Łukasz" in message.text


@pytest.mark.parametrize("ending", ["\r", "\n", "\r\n"])
def test_segment_endings(ending):
    raw = ending.join([HEADER, "PID|1||X1^^^HOSP", "ZXX|local"]) + ending
    message = parse_message(raw.encode())
    assert message.segment_names == ["MSH", "PID", "ZXX"]
    assert message.get("PID-3.4") == "HOSP"
    assert message.get("ZXX-1") == "local"


def test_escape_sequences_are_decoded():
    raw = f"{HEADER}\rNTE|1||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X41\\g\r"
    assert parse_message(raw.encode()).get("NTE-3") == "a|b^c&d~e\\fAg"


def test_absent_empty_and_null_are_told_apart():
    message = parse_message(f'{HEADER}\rPID|1||X||""|||\r'.encode())
    assert message.get("PID-5") == HL7_NULL  # sender says: clear it
    assert message.get("PID-7") is None  # empty: keep what is stored
    assert message.get("PID-30") is None  # absent
    assert message.get("OBR-1") is None  # segment absent


def test_repetitions_components_and_occurrences():
    obr = "|".join(["OBR", "{n}"] + [""] * 16 + ["ACC{n}"])  # OBR-18 Placer Field 1
    raw = "\r".join([HEADER, "PID|1||A1^^^ONE~B2^^^TWO", obr.format(n=1), obr.format(n=2)])
    message = parse_message(raw.encode())
    assert message.get("PID-3(2).4") == "TWO"
    assert message.repetitions("PID", 3) == 2
    assert message.count("OBR") == 2
    assert message.get("OBR[2]-18") == "ACC2"
    assert message.get(FieldPath.parse("MSH-9.2")) == "O01"


def test_field_path_round_trip_and_errors():
    assert str(FieldPath.parse("PID-3(2).4.2")) == "PID-3(2).4.2"
    assert FieldPath.parse("PID-3(2).4.1") == FieldPath.parse("PID-3(2).4")
    assert str(FieldPath.parse("OBR[2]-18")) == "OBR[2]-18"
    for bad in ("PID", "PID-0", "pid-3", "PID-3.x"):
        with pytest.raises(ValueError):
            FieldPath.parse(bad)


def test_msh18_utf8_with_invalid_bytes_is_rejected_with_the_offset():
    raw = (HEADER + "||||||UNICODE UTF-8\rPID|1||X||M\xfcller\r").encode("latin-1")
    with pytest.raises(MessageRejected, match="not valid utf-8"):
        parse_message(raw)


def test_undeclared_charset_takes_utf8_then_latin1():
    assert parse_message(f"{HEADER}\rPID|1||X||Jürg\r".encode()).get("PID-5") == "Jürg"
    assert parse_message(f"{HEADER}\rPID|1||X||Jürg\r".encode("latin-1")).get("PID-5") == "Jürg"


def test_unknown_charset_is_rejected():
    with pytest.raises(MessageRejected, match="MSH-18"):
        parse_message((HEADER + "||||||KLINGON\r").encode())


def test_not_hl7_is_rejected():
    for raw in (b"", b"hello", b"\x00\xff\x10", b"PID|1||X\r"):
        with pytest.raises(MessageRejected):
            parse_message(raw)


def test_digest_ignores_message_time_only():
    one = f"{HEADER}\rPID|1||X"
    assert content_digest(one) == content_digest(one.replace("20261127", "20261128", 1))
    assert content_digest(one) != content_digest(one.replace("PID|1||X", "PID|1||Y"))


def test_header_read_from_bytes_agrees_with_the_decoded_message():
    for path in sample_files():
        raw = path.read_bytes()
        from_bytes = read_header(raw)
        assert from_bytes == parse_message(raw).header(), path.name


def test_header_names_each_msh_field_once():
    raw = (
        b"MSH|^~\\&|RIS^1.2.3^ISO|HOSP|MWL|RAD|20261127120000||omi^o23^omi_o23|C\\F\\1|P^T|"
        b"2.5.1^USA|||AL|NE\rPID|1"
    )
    header = parse_message(raw).header()
    assert (header.field_separator, header.encoding_characters) == ("|", "^~\\&")
    assert (header.sending_application, header.sending_facility) == ("RIS", "HOSP")
    assert (header.receiving_application, header.receiving_facility) == ("MWL", "RAD")
    assert header.message_time == "20261127120000"
    assert (header.message_type, header.trigger_event, header.message_structure) == (
        "OMI",
        "O23",
        "OMI_O23",
    )
    assert header.type_name == "OMI^O23"
    assert header.control_id == "C|1"  # unescaped; the ACK echoes it as sent:
    assert header.sent(10) == "C\\F\\1"
    assert (header.processing_id, header.version) == ("P", "2.5.1")
    assert (header.accept_ack_type, header.application_ack_type) == ("AL", "NE")
    assert read_header(b"PID|1||X") is None
