"""The live progress display of a training run."""

from __future__ import annotations

import sys

__all__ = ["Progress"]


class Progress:
    """A live progress line (rich) on a terminal; one plain line per evaluation otherwise."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.live = enabled and sys.stderr.isatty()
        self._bar = None
        self.latest = ""
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import (
                Progress as RichProgress,
            )

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} steps/s"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[latest]}"),
                transient=False,
            )
            self._task = self._bar.add_task(label, total=total, rate="-", latest="")
            self._bar.start()

    def update(self, steps: int, rate: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=min(steps, self.total), rate=f"{rate:,.0f}")

    def evaluation(self, steps: int, summary: dict[str, float]) -> None:
        parts = [f"zero-shot {summary['test/zero_shot_return']:.1f}"]
        if "test/adapted_return" in summary:
            parts.append(f"adapted {summary['test/adapted_return']:.1f}")
        self.latest = "test: " + ", ".join(parts)
        if self._bar is not None:
            self._bar.update(self._task, latest=self.latest)
        elif self.enabled:
            print(f"[{self.label}] {steps}/{self.total} steps  {self.latest}", flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
