"""Patient identity reconciliation pages: ID collisions, likely duplicates, unscheduled exams.

Registered at /reconcile (and its API under /api) by :func:`mwlbroker.web.create_app`; the
merge, undo and duplicate-finding use cases live in the services layer. The pages come with
that service.
"""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("reconcile", __name__)
