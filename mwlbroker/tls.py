"""TLS contexts for the broker's listeners and clients, built from certificate files.

One place builds them so MLLP and DICOM (and their outbound sides) agree on what TLS means
here: TLS 1.2 or newer, the system's default ciphers, and client certificates required
whenever a CA to check them against is configured. A file that cannot be read or does not
match its key is reported with the setting that named it, before anything listens.
"""

from __future__ import annotations

import os
import ssl


class TLSConfigError(Exception):
    """A certificate, key or CA file cannot be used; the message names the setting."""


def server_context(cert: str, key: str, ca: str = "", *, setting: str = "tls") -> ssl.SSLContext:
    """A server context presenting ``cert``/``key``; with ``ca``, clients must present a
    certificate it signed (mutual TLS, how sites usually admit known RIS and modalities)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, cert, key, setting)
    if ca:
        _load_ca(context, ca, f"{setting}_ca")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    ca: str = "", cert: str = "", key: str = "", *, setting: str = "tls"
) -> ssl.SSLContext:
    """A client context checking the server against ``ca`` (else the system's CAs), and
    presenting ``cert``/``key`` when the server asks for a client certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca:
        _load_ca(context, ca, f"{setting}_ca")
    if cert:
        _load_chain(context, cert, key, setting)
    return context


def _load_chain(context: ssl.SSLContext, cert: str, key: str, setting: str) -> None:
    if not cert or not key:
        raise TLSConfigError(f"{setting}_cert and {setting}_key must both be set")
    for path in (cert, key):
        if not os.path.isfile(path):
            raise TLSConfigError(f"{setting}_cert/{setting}_key: {path}: no such file")
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        raise TLSConfigError(
            f"{setting}_cert/{setting}_key: cannot load {cert} with {key}: {error}"
        ) from None


def _load_ca(context: ssl.SSLContext, ca: str, setting: str) -> None:
    if not os.path.isfile(ca):
        raise TLSConfigError(f"{setting}: {ca}: no such file")
    try:
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as error:
        raise TLSConfigError(f"{setting}: cannot load {ca}: {error}") from None
