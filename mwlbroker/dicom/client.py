"""pynetdicom's AE as a client that always closes its socket.

pynetdicom 3.0 leaks the requestor's socket when the connection is refused: it calls
``shutdown()`` before ``close()`` in one ``try``, and shutdown of a socket that never connected
raises first (``AssociationSocket._shutdown_socket``). A forwarder retrying a PACS that is down
would leak one socket per attempt.
"""

from __future__ import annotations

import contextlib
import socket
from ssl import SSLContext

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.transport import AddressInformation, AssociationSocket


class _ClosingSocket(AssociationSocket):
    def _shutdown_socket(self) -> None:
        sock = self.socket
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


class ClientAE(AE):
    """An AE for outgoing associations whose socket is closed whatever happens."""

    def _create_socket(
        self,
        assoc: Association,
        address: AddressInformation,
        tls_args: tuple[SSLContext, str] | None,
    ) -> AssociationSocket:
        sock = _ClosingSocket(assoc, address=address)
        sock.tls_args = tls_args
        return sock
