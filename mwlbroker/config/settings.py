"""Every setting of the broker, declared once as data, in the order the reference shows them."""

from __future__ import annotations

from mwlbroker.config.listeners import LISTENER_SETTINGS
from mwlbroker.config.operations import OPERATION_SETTINGS
from mwlbroker.config.setting import Setting

SETTINGS: tuple[Setting, ...] = (*LISTENER_SETTINGS, *OPERATION_SETTINGS)

BY_KEY: dict[str, Setting] = {setting.key: setting for setting in SETTINGS}
