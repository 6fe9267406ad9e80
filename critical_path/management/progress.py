"""Progress of a long command: a bar redrawn in place on a terminal, a plain line per tenth otherwise."""

from __future__ import annotations

from django.core.management.base import OutputWrapper
from django.utils.translation import ngettext

WIDTH = 30


def jobs(count: int) -> str:
    """``"1 job"``, ``"2 jobs"``: a count of jobs in a command's output."""
    return ngettext("%(count)d job", "%(count)d jobs", count) % {"count": count}


class Progress:
    def __init__(self, out: OutputWrapper, total: int) -> None:
        self.out, self.total = out, max(total, 1)
        self.terminal = out.isatty()
        self.shown = 0  # tenths reported (plain lines)
        self.drawn = False

    def update(self, done: int) -> None:
        fraction = min(done / self.total, 1.0)
        if self.terminal:
            filled = int(fraction * WIDTH)
            bar = "#" * filled + "." * (WIDTH - filled)
            self.out.write(f"\r[{bar}] {done}/{self.total} ({fraction:.0%})", ending="")
            self.out.flush()
            self.drawn = True
        elif int(fraction * 10) > self.shown:
            self.shown = int(fraction * 10)
            self.out.write(f"{done}/{self.total} ({fraction:.0%})")

    def finish(self) -> None:
        if self.drawn:
            self.out.write("")
