"""A plain-text console progress bar: step, images/s and ETA.

On a terminal it redraws one line with a carriage return; otherwise (a log file, CI) it prints a
full line every `every` steps, and at least every `max_silence_s` seconds so a slow run's log
still shows it is alive.
"""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    """`H:MM:SS` (or `M:SS` under an hour)."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """Reports progress from `start_step` to `total_steps`; call `update(step, ...)` after steps.
    `unit` names what is counted, `rate_unit` the rate (`images_per_step` per second)."""

    def __init__(self, total_steps: int, *, start_step: int = 0, images_per_step: int = 1,
                 stream=None, every: int = 50, active: bool = True, width: int = 24, unit: str = "step",
                 rate_unit: str = "img/s", max_silence_s: float = 60.0, clock=time.perf_counter):
        self.total = max(1, total_steps)
        self.start_step = start_step
        self.images_per_step = images_per_step
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = max(1, every)
        self.active = active
        self.width = width
        self.unit, self.rate_unit = unit, rate_unit
        self.max_silence_s = max_silence_s
        self._clock = clock
        self._t0 = clock()
        self._last_print = self._t0
        self._last_len = 0

    def line(self, step: int, extra: str = "") -> str:
        """The text shown for `step`."""
        elapsed = self._clock() - self._t0
        done = step - self.start_step
        rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        filled = int(self.width * step / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        eta_text = format_duration(eta) if rate > 0 else "?"
        text = (f"[{bar}] {self.unit} {step}/{self.total} {rate * self.images_per_step:,.0f} {self.rate_unit} "
                f"elapsed {format_duration(elapsed)} eta {eta_text}")
        return f"{text} {extra}".rstrip()

    def update(self, step: int, extra: str = "") -> None:
        """Show progress after `step` (on a non-terminal, every `every` steps, the last, and
        whenever `max_silence_s` seconds have passed since the last line)."""
        if not self.active:
            return
        if self.tty:
            text = self.line(step, extra)
            pad = " " * max(0, self._last_len - len(text))
            self.stream.write(f"\r{text}{pad}")
            self._last_len = len(text)
            self.stream.flush()
        elif (step % self.every == 0 or step == self.total
              or self._clock() - self._last_print >= self.max_silence_s):
            self.stream.write(self.line(step, extra) + "\n")
            self.stream.flush()
            self._last_print = self._clock()

    def message(self, text: str) -> None:
        """Print a line of its own (e.g. evaluation results) without garbling the bar."""
        if not self.active:
            return
        if self.tty and self._last_len:
            self.stream.write("\n")
            self._last_len = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line on a terminal."""
        if self.active and self.tty and self._last_len:
            self.stream.write("\n")
            self.stream.flush()
            self._last_len = 0
