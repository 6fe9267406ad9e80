"""Crash points exit the process at once when listed, and cost nothing otherwise."""

import subprocess
import sys

from critical_path.core.crashpoints import CRASH_EXIT_CODE

PROGRAM = "import atexit; from critical_path.core.crashpoints import crash_point; atexit.register(print, 'atexit ran'); crash_point('relay.before_mark'); print('alive')"  # noqa: E501


def run(points):
    env = {"PATH": "/usr/bin:/bin", **({"CRITICAL_PATH_CRASH_POINTS": points} if points is not None else {})}
    return subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=30)


def test_a_listed_point_exits_at_once_skipping_atexit():
    done = run("dispatch.before_publish,relay.before_mark")
    assert (done.returncode, done.stdout) == (CRASH_EXIT_CODE, "")


def test_an_unlisted_point_does_nothing():
    for points in (None, "", "relay", "dispatch.before_mark"):
        done = run(points)
        assert (done.returncode, done.stdout) == (0, "alive\natexit ran\n"), points
