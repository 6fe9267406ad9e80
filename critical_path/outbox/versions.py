"""Payload versions: a job keeps the payload it was emitted with; delivery upgrades it to the code's version.

A side effect declares ``version=N`` when its arguments change, and one upgrade
per older version (``@effect.upgrade(from_version=1)``) that turns a version-1
payload into version 2's. A job stores the version it was emitted with, and its
stored payload is never rewritten: replaying a dead letter after a deploy runs
it through the upgrades of the code that runs it, step by step (1 → 2 → 3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from critical_path.exceptions import PayloadNotUpgradable, PayloadTooNew

if TYPE_CHECKING:
    from critical_path.models import Job
    from critical_path.outbox.effects import SideEffect


def upgraded(effect: SideEffect[Any, Any], job: Job) -> tuple[list[Any], dict[str, Any]]:
    """``job``'s arguments for the version of ``effect`` this process runs.

    Raises ``PayloadTooNew`` (a failed attempt, retried: a worker with the newer
    code may take the job next) for a payload newer than the code, and
    ``PayloadNotUpgradable`` (a dead letter) when an upgrade is missing or the
    upgraded payload does not fit the function.
    """
    if job.version == effect.version:
        return job.args, job.kwargs
    if job.version > effect.version:
        raise PayloadTooNew(
            f"job #{job.pk} holds a version {job.version} payload of {effect.path}, and this worker runs its "
            f"version {effect.version}: emitted by newer code. It is retried; it runs once every worker runs "
            f"version {job.version} or later (finish the deploy), or dead-letters when its attempts run out "
            "(replay it then)."
        )
    args, kwargs = list(job.args), dict(job.kwargs)
    for version in range(job.version, effect.version):
        upgrade = effect.upgrades.get(version)
        if upgrade is None:
            raise PayloadNotUpgradable(
                f"job #{job.pk} holds a version {job.version} payload of {effect.path}, which is at version "
                f"{effect.version}, and nothing upgrades version {version} to {version + 1}. Declare "
                f"@{effect.func.__name__}.upgrade(from_version={version}) and replay the job, or discard it."
            )
        result = upgrade(args, kwargs)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise PayloadNotUpgradable(
                f"the upgrade of {effect.path} from version {version} returned {result!r}; it must return "
                "(args, kwargs), a list and a dict. Fix it and replay the job."
            )
        args, kwargs = list(result[0]), result[1]
    try:
        effect.signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise PayloadNotUpgradable(
            f"job #{job.pk}'s version {job.version} payload, upgraded to version {effect.version}, does not fit "
            f"{effect.path}{effect.signature}: {exc} (args={args!r}, kwargs={kwargs!r}). Fix the upgrades and "
            "replay the job."
        ) from None
    return args, kwargs
