"""The broker's configuration as the tests run it: defaults, on free loopback ports."""

from __future__ import annotations

from mwlbroker.config import Config, load_config


def make_config(database_url: str, **overrides: object) -> Config:
    """The default configuration on free loopback ports, with ``section.name`` overrides."""
    values = {
        "database.url": database_url,
        "hl7.port": 0,
        "dicom.port": 0,
        "web.port": 0,
        "web.secret_key": "test-secret-key-not-for-production",
        **{key.replace("__", "."): value for key, value in overrides.items()},
    }
    return load_config(environ={}).with_overrides(values)
