"""Named crash points for fault-injection tests: the process dies at a chosen step, as a SIGKILL would.

``CRITICAL_PATH_CRASH_POINTS`` (comma-separated names, read at each point, never
at import) lists the points that exit the process at once with ``CRASH_EXIT_CODE``,
skipping ``atexit`` handlers and ``finally`` blocks. Unset, a point costs one
environment lookup. The points:

``dispatch.before_publish``
    the web process took committed jobs from its queue but published nothing;
``dispatch.before_mark``
    the dispatcher published a batch but did not mark it ``enqueued``;
``relay.before_mark``
    a relay published a batch but did not mark it;
``delivery.after_claim``
    a worker claimed a job and died before running its side effect;
``delivery.after_run``
    a worker ran the side effect and died before its success was committed (with ``atomic=True``: inside
    the side effect's transaction, after the success UPDATE).
"""

from __future__ import annotations

import os

ENVIRONMENT_VARIABLE = "CRITICAL_PATH_CRASH_POINTS"
CRASH_EXIT_CODE = 70


def crash_point(name: str) -> None:
    points = os.environ.get(ENVIRONMENT_VARIABLE)
    if points and name in points.split(","):
        os._exit(CRASH_EXIT_CODE)
