"""A web process stand-in: emits side effects in transactions, timing each, then exits like a web process.

``python -m tests.faults.emitter --count N --key-prefix P`` emits ``N`` jobs of
``--effect`` (a side effect taking one text argument) keyed ``P-0`` … ``P-N-1``,
``--per-transaction`` of them per transaction (with ``--ordering-keys K``, job
``n`` takes the ordering key ``P:n mod K``), and prints one JSON line per job:
its key, id and how long its transaction (the request's share) took. At exit the
dispatcher flushes as in any process, unless a crash point ends it first.
"""

from __future__ import annotations

import argparse
import json
import time

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--key-prefix", required=True)
    parser.add_argument("--per-transaction", type=int, default=1)
    parser.add_argument("--effect", default="tests.effects.note")
    parser.add_argument("--ordering-keys", type=int, default=0)
    options = parser.parse_args()
    django.setup()

    from django.db import transaction

    from critical_path.outbox.effects import resolve

    effect = resolve(options.effect)
    keys = [f"{options.key_prefix}-{index}" for index in range(options.count)]
    ordering = options.ordering_keys
    emits = [
        effect.using(key=key, ordering_key=f"{options.key_prefix}:{index % ordering}")
        if ordering
        else effect.using(key=key)
        for index, key in enumerate(keys)
    ]
    for start in range(0, len(keys), options.per_transaction):
        began = time.monotonic()
        end = start + options.per_transaction
        with transaction.atomic():
            jobs = [emit.after_commit(key) for emit, key in zip(emits[start:end], keys[start:end], strict=True)]
        seconds = time.monotonic() - began
        for job in jobs:
            print(json.dumps({"key": job.idempotency_key, "job": job.pk, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
