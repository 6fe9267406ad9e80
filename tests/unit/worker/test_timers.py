"""The worker's timer heap loses the cancelled time-limit timers of finished tasks, and keeps the others in order."""

from kombu.asynchronous import Hub

from critical_path.worker import timers


def test_compaction_drops_cancelled_timers_and_keeps_the_rest_due_in_order():
    hub = Hub()
    fired = []
    trefs = [hub.call_later(100 + n, fired.append, n) for n in range(100)]
    for n, tref in enumerate(trefs):
        if n % 10:
            hub.timer.cancel(tref)  # what the prefork pool does when a task finishes within its time limit
    queue = hub.timer._queue
    assert len(queue) == 100

    assert timers.compact(queue) == 90
    assert len(hub.timer) == 10 and queue is hub.timer._queue
    assert timers.compact(queue) == 0

    assert sorted(event.entry.args[0] for event in queue) == list(range(0, 100, 10))
    # Still a heap, so the timer fires the earliest first: each entry is due no later than its children.
    assert all(queue[(i - 1) // 2].eta <= queue[i].eta for i in range(1, len(queue)))
    assert not fired
    hub.close()


def test_a_worker_without_an_event_loop_is_left_alone():
    class Consumer:
        controller = None

    timers.compact_regularly(sender=Consumer())  # the solo and threads pools: nothing to compact
