"""Forward received instances to the PACS over C-STORE, on a thread of its own.

The forwarder claims a batch of due instances, opens one association proposing exactly the
SOP classes and transfer syntaxes they need, sends each with its patient and order attributes
coerced to the broker's record, and records what the PACS answered. A PACS that cannot be
reached makes it back off, doubling the wait up to ``forward.retry_max_seconds``, and try
again for as long as it takes; a refusal counts towards ``forward.max_attempts``. With
``forward.tls`` the association runs over TLS, the PACS's certificate checked for its host.
"""

from __future__ import annotations

import logging
from datetime import datetime
from io import BytesIO

from pydicom import dcmread
from pynetdicom.association import Association

from mwlbroker.dicom.association_tuning import ClientAE
from mwlbroker.mapping.coercion import coerce
from mwlbroker.services.delivery import DeliveryWorker
from mwlbroker.services.forward import ForwardClaim, ForwardService
from mwlbroker.tls import client_context

log = logging.getLogger("mwlbroker.forward")

_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")  # explicit, implicit VR LE
_MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are odd numbers 1-255


class Forwarder:
    """Sends the forward queue to the PACS, a batch per association."""

    def __init__(self, service: ForwardService) -> None:
        """Raises TLSConfigError, naming the forward.tls_* setting, for an unusable file."""
        self.service = service
        options = service.options
        self._tls = (
            (
                client_context(
                    options.tls_ca, options.tls_cert, options.tls_key, setting="forward.tls"
                ),
                options.host,
            )
            if options.tls
            else None
        )
        self._worker = DeliveryWorker(
            "forward", service.wakeup, service.claim, self._send, service.options.backoff
        )

    def start(self) -> None:
        options = self.service.options
        self._worker.start()
        log.info(
            "forwarding received instances to %s at %s:%d as %s%s",
            options.ae_title,
            options.host,
            options.port,
            options.calling_ae,
            " over TLS" if self._tls is not None else "",
            extra={"event": "forward_started"},
        )

    def stop(self, timeout: float = 10.0) -> None:
        self._worker.stop(timeout)

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
        assoc = ae.associate(
            options.host, options.port, ae_title=options.ae_title, tls_args=self._tls
        )
        if not assoc.is_established:
            error = f"no association with {options.ae_title} at {options.host}:{options.port}"
            for claim in claims:
                self.service.not_forwarded(claim, error, sent=False)
            return False
        try:
            for claim in claims:
                if self._worker.stopping or not assoc.is_established:
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
