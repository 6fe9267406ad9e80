"""Job's own helpers: its UUID."""

import itertools

from critical_path.models import new_uuid


def test_a_process_s_uuids_are_version_7_and_strictly_increasing_within_a_millisecond():
    uuids = [new_uuid() for _ in range(10_000)]  # thousands per millisecond: the counter, not the clock, orders them
    assert all(earlier < later for earlier, later in itertools.pairwise(uuids))
    assert {(value.version, value.variant) for value in uuids} == {(7, "specified in RFC 4122")}
