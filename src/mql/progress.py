"""The live progress display of a training run.

On a terminal: one rich line that fits 80 columns (phase, bar, steps, rate, time left) and,
below it, the latest evaluation. Elsewhere (a log file, `mql train --seeds`' children, or with
MQL_PROGRESS=lines): one plain line per evaluation and one when the warm-up ends, on stderr.
"""

from __future__ import annotations

import os
import sys

__all__ = ["Progress"]


class Progress:
    """Progress of one run (see the module docstring)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        lines = os.environ.get("MQL_PROGRESS") == "lines"
        self.live = enabled and sys.stderr.isatty() and not lines
        self._bar = None
        self.latest = ""
        self.warmup = False
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
                BarColumn(bar_width=16),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}/s"),
                TimeRemainingColumn(),
                TextColumn("\n  {task.fields[latest]}"),
                transient=False,
            )
            self._task = self._bar.add_task(label, total=total, rate="-", latest="")
            self._bar.start()

    def update(self, steps: int, rate: float, warmup: bool = False) -> None:
        if warmup != self.warmup and self.enabled and not self.live and not warmup:
            print(f"[{self.label}] {steps}/{self.total} steps  warm-up done", file=sys.stderr)
        self.warmup = warmup
        if self._bar is not None:
            phase = f"{self.label} warm-up" if warmup else self.label
            self._bar.update(
                self._task,
                description=phase,
                completed=min(steps, self.total),
                rate=f"{rate:,.0f}",
            )

    def evaluation(self, steps: int, summary: dict[str, float], final: bool = False) -> None:
        parts = [f"zero-shot {summary['test/zero_shot_return']:.1f}"]
        if "test/adapted_return" in summary:
            parts.append(f"adapted {summary['test/adapted_return']:.1f}")
        what = "final evaluation" if final else "evaluation"
        self.latest = f"{what} at {steps} steps (test): " + ", ".join(parts)
        if self._bar is not None:
            self._bar.update(self._task, latest=self.latest)
        elif self.enabled:
            print(f"[{self.label}] {steps}/{self.total} steps  {self.latest}", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
