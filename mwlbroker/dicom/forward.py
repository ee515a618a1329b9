"""Forward received instances to the PACS over C-STORE, on a thread of its own.

The forwarder claims a batch of due instances, opens one association proposing exactly the
SOP classes and transfer syntaxes they need, sends each with its patient and order attributes
coerced to the broker's record, and records what the PACS answered. A PACS that cannot be
reached makes it back off, doubling the wait up to ``forward.retry_max_seconds``, and try
again for as long as it takes; a refusal counts towards ``forward.max_attempts``.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from io import BytesIO

from pydicom import dcmread
from pynetdicom.association import Association

from mwlbroker.dicom.client import ClientAE
from mwlbroker.mapping.coercion import coerce
from mwlbroker.services.forward import POLL_SECONDS, ForwardClaim, ForwardService

log = logging.getLogger("mwlbroker.forward")

_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")  # explicit, implicit VR LE
_MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are odd numbers 1-255


class Forwarder:
    """Sends the forward queue to the PACS, a batch per association."""

    def __init__(self, service: ForwardService) -> None:
        self.service = service
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forward", daemon=True)

    def start(self) -> None:
        options = self.service.options
        self._thread.start()
        log.info(
            "forwarding received instances to %s at %s:%d as %s",
            options.ae_title,
            options.host,
            options.port,
            options.calling_ae,
            extra={"event": "forward_started"},
        )

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.service.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        seen = self.service.generation
        while not self._stopping.is_set():
            try:
                claims = self.service.claim()
            except Exception as error:  # the database is restarting, or gone
                failures += 1
                log.error("forward: cannot read the queue: %s", error)
                self._stopping.wait(self.service.options.backoff(failures))
                continue
            if not claims:
                seen = self.service.wait(seen, POLL_SECONDS)
                continue
            try:
                reached = self._send(claims)
            except Exception:  # never let the forwarder die: the queue is kept
                log.exception("forward: a batch of %d failed", len(claims))
                reached = False
            failures = 0 if reached else failures + 1
            if not reached:
                self._stopping.wait(self.service.options.backoff(failures))

    def _send(self, claims: list[ForwardClaim]) -> bool:
        """One association for the batch; False when the PACS could not be reached."""
        options = self.service.options
        ae = ClientAE(ae_title=options.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = options.timeout
        contexts: dict[str, set[str]] = {}
        for claim in claims:
            syntaxes = contexts.setdefault(claim.sop_class_uid, set(_UNCOMPRESSED))
            syntaxes.add(claim.transfer_syntax_uid or _UNCOMPRESSED[0])
        for sop_class, syntaxes in list(contexts.items())[:_MAX_CONTEXTS]:
            ae.add_requested_context(sop_class, sorted(syntaxes))
        assoc = ae.associate(options.host, options.port, ae_title=options.ae_title)
        if not assoc.is_established:
            error = f"no association with {options.ae_title} at {options.host}:{options.port}"
            for claim in claims:
                self.service.not_forwarded(claim, error, sent=False)
            return False
        try:
            for claim in claims:
                if self._stopping.is_set() or not assoc.is_established:
                    self.service.not_forwarded(claim, "the association ended", sent=False)
                    continue
                self._send_one(assoc, claim)
        finally:
            if assoc.is_established:
                assoc.release()
        return True

    def _send_one(self, assoc: Association, claim: ForwardClaim) -> None:
        try:
            dataset = dcmread(BytesIO(self.service.read(claim)))
        except Exception as error:  # gone from disk, or unreadable
            self.service.not_forwarded(claim, f"cannot read the instance: {error}", sent=True)
            return
        coerced: list[str] = []
        if claim.coerce:
            coerced = coerce(
                dataset,
                claim.coerce,
                at=datetime.now(),
                system=self.service.options.calling_ae,
                source=claim.source,
            )
        try:
            status = assoc.send_c_store(dataset)
        except Exception as error:  # no context for it, or it cannot be encoded
            self.service.not_forwarded(claim, f"not sent: {error}", sent=True)
            return
        if status is None or "Status" not in status:
            self.service.not_forwarded(claim, "no C-STORE response", sent=True)
            return
        code = int(status.Status)
        # PS3.4 B.2.3: success, or a warning (coercion, elements discarded): the PACS has it.
        if code == 0x0000 or code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
            self.service.forwarded(claim, code, coerced)
        else:
            comment = str(status.get("ErrorComment", "") or "")
            self.service.not_forwarded(
                claim, f"refused ({code:04X})" + (f": {comment}" if comment else ""), sent=True
            )
