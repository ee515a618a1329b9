"""Deliver the outbound queue over MLLP: a sender thread per destination.

Each sender takes the next due message, sends it on its connection and waits for the ACK
before the next one, so the messages of an order arrive in the order they were written. What
became of each attempt is recorded by the outbound service: an ACK (AA, or CA in enhanced
mode) ends it; a negative or missing ACK makes the message wait and try again later, while
other orders' messages go on; an unreachable destination makes the sender back off, doubling
the wait up to ``outbound.retry_max_seconds``, and keep trying for as long as it takes.
"""

from __future__ import annotations

import contextlib
import logging

from mwlbroker.domain.outbound import Destination
from mwlbroker.mllp.sender import AckTimeout, MLLPClient, Reply, SendError
from mwlbroker.services.delivery import DeliveryWorker
from mwlbroker.services.outbound import Claim, OutboundService
from mwlbroker.tls import client_context

log = logging.getLogger("mwlbroker.outbound")

_POSITIVE = ("AA", "CA")  # MSA-1: application accept, or commit accept (enhanced mode)


class _Unreachable(Exception):
    """The destination could not be connected to: the message never left."""


class OutboundSender:
    """Sends one destination's messages, one at a time, each waiting for its ACK."""

    def __init__(self, service: OutboundService, destination: Destination) -> None:
        self.service = service
        self.destination = destination
        self._client: MLLPClient | None = None
        self._tls = (
            client_context(
                destination.tls_ca,
                destination.tls_cert,
                destination.tls_key,
                setting=f"outbound.destinations[{destination.name}].tls",
            )
            if destination.tls
            else None
        )
        self._worker = DeliveryWorker(
            f"outbound-{destination.name}",
            service.wakeup,
            lambda: service.claim(destination.name),
            self._deliver,
            service.options.backoff,
        )

    def start(self) -> None:
        self._worker.start()
        log.info(
            "outbound sender for %s (%s:%d, HL7 %s %s) started",
            self.destination.name,
            self.destination.host,
            self.destination.port,
            self.destination.version,
            self.destination.message_type,
            extra={"event": "outbound_started", "destination": self.destination.name},
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the message in hand (its ACK is waited for, up to the ACK timeout)."""
        self._worker.stop(timeout)
        self._close()

    def _deliver(self, claim: Claim) -> bool:
        """One attempt; returns False when the destination could not be reached."""
        try:
            reply = self._exchange(claim.payload)
        except _Unreachable as error:
            self.service.not_delivered(claim, str(error), sent=False)
            return False
        except SendError as error:
            self._close()
            self.service.not_delivered(claim, f"no ACK: {error}", sent=True)
            return True
        acknowledged = reply.field("MSA", 2)
        code = reply.code
        if acknowledged != claim.control_id:
            # An answer to some other message: the conversation is out of step, start afresh.
            self._close()
            reason = f"the answer acknowledges {acknowledged!r}, not {claim.control_id!r}"
        elif code in _POSITIVE:
            self.service.delivered(claim, code, reply.text)
            return True
        else:
            reason = f"answered {code or '(no MSA-1)'}: {_reason(reply)}"
        self.service.not_delivered(claim, reason, sent=True, ack_code=code, ack=reply.text)
        return True

    def _exchange(self, payload: bytes) -> Reply:
        """Send on the open connection, or a new one; a connection the peer closed while idle
        is replaced once, silently."""
        if self._client is not None:
            try:
                return self._client.send(payload)
            except AckTimeout:
                raise
            except SendError:
                self._close()  # closed by the destination while idle: try a fresh one
        destination = self.destination
        try:
            self._client = MLLPClient(
                destination.host,
                destination.port,
                timeout=self.service.options.ack_timeout,
                tls=self._tls,
            )
        except SendError as error:
            raise _Unreachable(str(error)) from None
        return self._client.send(payload)

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _reason(reply: Reply) -> str:
    """MSA-3, else ERR's text, else the whole answer: what the destination said was wrong."""
    return reply.reason or reply.text.replace("\r", " | ")[:300]
