"""The HTTP listener: waitress, a production WSGI server in pure Python, on its own thread."""

from __future__ import annotations

import logging
import threading
from typing import Any

from waitress.server import create_server

log = logging.getLogger("mwlbroker.web")


class WebServer:
    """Serves a WSGI application on host:port until :meth:`stop`; port 0 picks a free one."""

    def __init__(self, app: Any, host: str, port: int, *, threads: int = 8) -> None:
        # Binds now, so a port in use fails start-up rather than a thread later.
        self._server: Any = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="mwlbroker",
            clear_untrusted_proxy_headers=True,
            channel_timeout=60,
        )
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return str(self._server.effective_host), int(self._server.effective_port)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, close every connection, finish the requests in hand."""
        server = self._server

        def close_everything() -> None:
            for channel in list(server._map.values()):
                channel.close()

        if self._thread.is_alive():
            # Runs on the server's own thread: its socket map is not shared with this one.
            server.trigger.pull_trigger(close_everything)
            self._thread.join(timeout)
        else:
            server.close()
        server.task_dispatcher.shutdown(timeout=timeout)
