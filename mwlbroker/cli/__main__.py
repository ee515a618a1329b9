"""Allow ``python -m mwlbroker.cli``, as it ran when the command line was one module."""

from mwlbroker.cli import main

raise SystemExit(main())
