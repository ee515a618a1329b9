"""Every setting of the broker, declared once: name, default, type and one line of help.

The declarations are data (:mod:`.listeners`, :mod:`.operations`), read by the loader
(:mod:`.load`) and by the generated configuration reference. Only the composition root and the
edges read a :class:`Config`; it hands the store and the services typed options instead.
"""

from mwlbroker.config.load import Config, ConfigError, load_config
from mwlbroker.config.setting import ENV_PREFIX, Setting
from mwlbroker.config.settings import SETTINGS
from mwlbroker.domain.masking import mask_url

__all__ = ["ENV_PREFIX", "SETTINGS", "Config", "ConfigError", "Setting", "load_config", "mask_url"]
