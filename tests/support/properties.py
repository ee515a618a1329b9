"""Shared settings of the property-based tests (hypothesis).

Example counts are kept small so that the suite stays fast; MWLBROKER_PROPERTY_SCALE multiplies
every one of them for a longer hunt (``MWLBROKER_PROPERTY_SCALE=50 ./run-tests -k property``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = max(1, int(os.environ.get("MWLBROKER_PROPERTY_SCALE", "1")))


def examples(count: int, *, against_broker: bool = False) -> settings:
    """Hypothesis settings for ``count`` examples (times the scale), with no per-example deadline.

    ``against_broker``: one broker serves every example of a test (that it survives them all is
    the point), so hypothesis is told the function-scoped fixture is shared on purpose.
    """
    suppressed = [HealthCheck.too_slow, HealthCheck.data_too_large]
    if against_broker:
        suppressed.append(HealthCheck.function_scoped_fixture)
    return settings(
        max_examples=count * SCALE,
        deadline=None,
        suppress_health_check=suppressed,
        derandomize=False,
        print_blob=True,
    )
