"""Application acknowledgments and enhanced mode (HL7 v2 chapter 2.9.2 and 2.9.3).

In **original mode** (MSH-15 and MSH-16 both empty) the receiver answers on the same
connection once it has processed the message: an ACK, or where the sender expects it the
order response of its message type (ORR^O02 for ORM^O01, ORI^O24 for OMI^O23, ORG^O20 for
OMG^O19) carrying the same MSA and, in its response group, the patient and each order with
its order control response (ORC-1, table 0119) and status (ORC-5, table 0038).

In **enhanced mode** the receiver answers twice: at once with a commit (accept) ACK,
MSA-1 CA / CE / CR, saying only whether the message is safely stored, and later with the
application acknowledgment as a new message of its own. MSH-15 Accept Acknowledgment Type and
MSH-16 Application Acknowledgment Type (table 0155: AL, NE, ER, SU) say when each is wanted.

The MSH, MSA and ERR of every one of these come from :func:`~mwlbroker.hl7v2.ack.build_ack`,
so they follow the sender's version exactly as the ACK does (ERR-1 up to v2.4, ERR-2..8 from
v2.5, MSA-3 gone from v2.7).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mwlbroker.domain.errors import MessageRejected
from mwlbroker.domain.messages import AckCode, AckCondition, CommitCode, HL7ErrorCode
from mwlbroker.hl7v2.ack import build_ack
from mwlbroker.hl7v2.header import MessageHeader
from mwlbroker.hl7v2.reader import HL7Message
from mwlbroker.hl7v2.writer import escape

ORDER_RESPONSES = ("ORR^O02", "ORI^O24", "ORG^O20")
"""The order response messages the broker writes (the registry names which answers which)."""

# The segments each order response echoes per order, after its ORC: the first starts an
# order group (ORR_O02 / ORG_O20: OBR; ORI_O24: OBR and its IPCs).
_ORDER_GROUP = {"ORR^O02": ("OBR",), "ORI^O24": ("OBR", "IPC"), "ORG^O20": ("OBR",)}

# ORC-1 of the response for each order control received (HL7 table 0119): done as asked, or
# unable to. SC (status changed) has no reply code of its own: OK, or unable to accept.
ORDER_CONTROL_REPLY: dict[str, tuple[str, str]] = {
    "NW": ("OK", "UA"),  # order accepted & OK / unable to accept order
    "XO": ("XR", "UX"),  # changed as requested / unable to change
    "CA": ("CR", "UC"),  # canceled as requested / unable to cancel
    "OC": ("CR", "UC"),
    "DC": ("DR", "UD"),  # discontinued as requested / unable to discontinue
    "HD": ("HR", "UH"),  # on hold as requested / unable to put on hold
    "RL": ("OR", "UA"),  # released as requested
    "SC": ("OK", "UA"),
}

# Table 0357 conditions that mean MSH-9, MSH-11 or MSH-12 is not acceptable: a commit reject.
_COMMIT_REJECTS = frozenset(
    {
        HL7ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
        HL7ErrorCode.UNSUPPORTED_EVENT_CODE,
        HL7ErrorCode.UNSUPPORTED_PROCESSING_ID,
        HL7ErrorCode.UNSUPPORTED_VERSION_ID,
    }
)
_STANDARD_ENCODING = ("|", "^~\\&")


def ack_conditions(header: MessageHeader) -> tuple[AckCondition, AckCondition] | None:
    """MSH-15 and MSH-16 as read, or ``None`` in original mode (both empty).

    In enhanced mode an empty MSH-15 means AL (a commit ACK always: the sender is told the
    message is stored) and an empty MSH-16 means NE (no application acknowledgment unless
    asked for). A value outside table 0155 raises :class:`MessageRejected` at its field.
    """
    accept, application = header.accept_ack_type, header.application_ack_type
    if not accept and not application:
        return None
    for number, name, value in (
        (15, "Accept Ack Type", accept),
        (16, "Application Ack Type", application),
    ):
        if value and value not in {condition.value for condition in AckCondition}:
            # Short enough for MSA-3 (80 characters in v2.3.1), where most consoles show it.
            raise MessageRejected(
                f"MSH-{number} {name} {value!r} not in HL7 table 0155 ({', '.join(AckCondition)})",
                error_code=HL7ErrorCode.TABLE_VALUE_NOT_FOUND,
                location=f"MSH-{number}",
            )
    return AckCondition(accept or AckCondition.ALWAYS), AckCondition(
        application or AckCondition.NEVER
    )


def accept_condition(header: MessageHeader | None) -> AckCondition | None:
    """MSH-15 in enhanced mode, or ``None`` (original mode, no header, or a value not in 0155)."""
    if header is None:
        return None
    try:
        conditions = ack_conditions(header)
    except MessageRejected:
        return None
    return conditions[0] if conditions is not None else None


def commit_code(ack_code: AckCode, error_code: int | None) -> CommitCode:
    """The commit ACK for a stored message answered ``ack_code`` in original mode.

    Stored and taken for processing (AA, AE) is CA: the application outcome follows in the
    application acknowledgment. A message never accepted (AR) is CR when its MSH-9, MSH-11 or
    MSH-12 is not acceptable, and CE otherwise (chapter 2.9.3.1).
    """
    if ack_code != AckCode.REJECT:
        return CommitCode.ACCEPT
    return CommitCode.REJECT if error_code in _COMMIT_REJECTS else CommitCode.ERROR


def build_order_response(
    header: MessageHeader,
    response_type: str,
    code: AckCode,
    message: HL7Message | None,
    *,
    order_status: str = "",
    filler_order_number: str | None = None,
    outcomes: Mapping[str, tuple[str, str | None]] | None = None,
    text: str | None = None,
    error_code: int | None = None,
    location: str | None = None,
    application: str = "MWLBROKER",
    facility: str = "",
    codec: str = "latin-1",
    control_id: str | None = None,
) -> bytes:
    """``response_type`` (ORR^O02, ORI^O24, ORG^O20) answering the order message ``message``.

    MSH, MSA and ERR are the ACK's. The response group echoes the first PID and, per order
    item of the message, its ORC with ORC-1 the order control response, ORC-2 and ORC-3 the
    order numbers as sent (ORC-3, when not sent, the filler number the broker holds) and
    ORC-5 ``order_status``, followed by the item's OBR (and, for ORI^O24, its IPCs) as sent.
    A message of several orders answers each ORC by its own ORC-1, and ``outcomes`` gives each
    placer order number (ORC-2.1 as sent) its own ORC-5 and filler number.
    Without a message, or one in other delimiters than ``|^~\\&``, the group is left out.
    """
    ack = build_ack(
        header,
        code,
        text=text,
        error_code=error_code,
        location=location,
        application=application,
        facility=facility,
        codec=codec,
        control_id=control_id,
    ).decode(codec)
    lines = ack.split("\r")
    msh = lines[0].split("|")
    event = response_type.split("^")
    structure = "_".join(event)
    # MSH-9.3 Message Structure exists from v2.3.1 on: build_ack wrote ACK^O01^ACK there.
    modern = msh[8].count("^") >= 2
    msh[8] = "^".join([*event, structure] if modern else event)
    lines[0] = "|".join(msh)
    if message is not None and (header.field_separator, header.encoding_characters) == (
        _STANDARD_ENCODING
    ):
        lines += _response_group(
            message,
            _ORDER_GROUP[response_type],
            _Outcome(code == AckCode.ACCEPT, order_status, filler_order_number, outcomes or {}),
        )
    return "\r".join(lines).encode(codec, errors="replace")


@dataclass(frozen=True)
class _Outcome:
    """What the response says of each order: applied or not, its status and filler number."""

    applied: bool
    order_status: str
    filler: str | None
    by_placer: Mapping[str, tuple[str, str | None]]

    def orc(self, sent: list[str]) -> str:
        """ORC-1 the reply to this ORC's own control, ORC-2 / ORC-3 as sent (ORC-3 else the
        broker's), ORC-5 the order's status."""
        control = sent[1].split("^")[0].upper() if len(sent) > 1 else ""  # ORC-1
        reply = ORDER_CONTROL_REPLY.get(control, ("OK", "UA"))[0 if self.applied else 1]
        placer = sent[2] if len(sent) > 2 else ""  # ORC-2 Placer Order Number
        filler_sent = sent[3] if len(sent) > 3 else ""  # ORC-3 Filler Order Number
        status, filler = self.by_placer.get(placer.split("^")[0], (self.order_status, self.filler))
        fields = [
            "ORC",
            reply,
            placer,
            filler_sent or escape(filler or ""),
            "",
            status if self.applied else "",
        ]
        return "|".join(fields).rstrip("|")


def _response_group(message: HL7Message, group: tuple[str, ...], outcome: _Outcome) -> list[str]:
    """PID and the order groups of the response, as ER7 lines."""
    main, *extras = group
    seen: dict[str, int] = {}
    orders: list[list[str]] = []
    orc: list[str] | None = None
    orc_used = True
    for name in message.segment_names:
        seen[name] = seen.get(name, 0) + 1
        fields = message.fields(name, seen[name]) or [name]
        if name == "ORC":
            if orc is not None and not orc_used:
                orders.append([outcome.orc(orc)])
            orc, orc_used = fields, False
        elif name == main and orc is not None:
            orders.append([outcome.orc(orc), "|".join(fields)])
            orc_used = True
        elif name in extras and orders and orc_used:
            orders[-1].append("|".join(fields))
    if orc is not None and not orc_used:
        orders.append([outcome.orc(orc)])
    if not orders:
        return []
    pid = message.fields("PID")
    lines = ["|".join(pid)] if pid else []
    for order in orders:
        lines += order
    return lines
