"""A PACS for the forwarding tests: a pynetdicom Storage SCP on loopback that keeps what it gets."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable

from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt


class PACS:
    """A Storage SCP keeping what it receives; ``answer(dataset)`` gives each status."""

    def __init__(
        self,
        answer: Callable[[Dataset], int] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.answer = answer or (lambda _dataset: 0x0000)
        self.ssl_context = ssl_context
        self.received: list[Dataset] = []
        self.calling_aes: list[str] = []
        self._changed = threading.Condition()
        self._server = None
        # Hold a free port, bound but not listening: the PACS is down until start().
        self._holder = socket.socket()
        self._holder.bind(("127.0.0.1", 0))
        self.port = self._holder.getsockname()[1]

    def start(self) -> PACS:
        self._holder.close()
        ae = AE(ae_title="PACS")
        ae.supported_contexts = AllStoragePresentationContexts
        self._server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._store)],
            ssl_context=self.ssl_context,
        )
        return self

    def _store(self, event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        status = self.answer(dataset)
        with self._changed:
            if status == 0x0000:
                self.received.append(dataset)
                self.calling_aes.append(event.assoc.requestor.ae_title)
            self._changed.notify_all()
        return status

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Dataset]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"the PACS has {len(self.received)} instance(s), not {count}")
            return list(self.received)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        self._holder.close()


def forwarding(pacs: PACS, **extra: object) -> dict[str, object]:
    """The broker's forward.* settings for this PACS, retrying fast."""
    return {
        "forward__host": "127.0.0.1",
        "forward__port": pacs.port,
        "forward__ae_title": "PACS",
        "forward__retry_seconds": 0.05,
        "forward__retry_max_seconds": 0.2,
        **extra,
    }
