"""Resolve the effective configuration: defaults, then the TOML file, then the environment.

Settings load in this order, each layer overriding the one before: the declared defaults, the
TOML file given with ``--config`` (or ``MWLBROKER_CONFIG``), then ``MWLBROKER_<SECTION>_<KEY>``
environment variables (command-line flags, last, come in through :meth:`Config.with_overrides`).
A bad value stops start-up with a :class:`ConfigError` naming the key, because a broker that
starts on a half-understood configuration loses messages quietly.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mwlbroker.config.setting import ENV_PREFIX, Setting
from mwlbroker.config.settings import BY_KEY, SETTINGS
from mwlbroker.domain.masking import mask_url
from mwlbroker.domain.schedule import Schedule


class ConfigError(Exception):
    """A setting is missing, unknown or has a value the broker cannot use."""


@dataclass(frozen=True)
class Config:
    """The effective configuration: every setting resolved, with where each value came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        """A copy with some settings replaced, keyed ``section.name`` (command-line flags, tests)."""
        values = dict(self.values)
        sources = dict(self.sources)
        for key, raw in overrides.items():
            setting = BY_KEY.get(key)
            if setting is None:
                raise ConfigError(f"{key}: unknown setting")
            values[key] = _parse(setting, raw, "override")
            sources[key] = "override"
        return Config(values, sources)

    def display(self) -> list[tuple[str, str, str]]:
        """(key, value as shown, source) for every setting, secrets masked."""
        rows = []
        for setting in SETTINGS:
            value = self.values[setting.key]
            shown = _toml_value(value)
            if setting.secret:
                shown = mask_url(shown) if "://" in shown else ('"***"' if value else shown)
            rows.append((setting.key, shown, self.sources.get(setting.key, "default")))
        return rows


def _toml_value(value: Any) -> str:
    if isinstance(value, Schedule):
        return _toml_value(str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


def _parse(setting: Setting, raw: Any, source: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as error:
        where = f" (from {source})" if source != "default" else ""
        raise ConfigError(f"{setting.key}: {error}{where}") from None


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Resolve every setting from defaults, the TOML file and the environment."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get(f"{ENV_PREFIX}CONFIG"):
        path = environ[f"{ENV_PREFIX}CONFIG"]
    values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    sources: dict[str, str] = {}

    if path is not None:
        for key, raw in _read_toml(Path(path)).items():
            setting = BY_KEY.get(key)
            if setting is None:
                raise ConfigError(f"{key}: unknown setting (in {path})")
            values[key] = _parse(setting, raw, str(path))
            sources[key] = str(path)

    known_env = {s.env_var: s for s in SETTINGS}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == f"{ENV_PREFIX}CONFIG":
            continue
        setting = known_env.get(name)
        if setting is None:
            # A misspelt override would otherwise be ignored without a word.
            raise ConfigError(f"{name}: unknown setting in the environment")
        values[setting.key] = _parse(setting, raw, name)
        sources[setting.key] = name
    return Config(values, sources)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None

    flat: dict[str, Any] = {}
    for section, body in document.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{section}: expected a [{section}] table (in {path})")
        for name, raw in body.items():
            flat[f"{section}.{name}"] = raw
    return flat
