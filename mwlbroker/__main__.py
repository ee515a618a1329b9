"""Allow ``python -m mwlbroker``."""

from mwlbroker.cli import main

raise SystemExit(main())
