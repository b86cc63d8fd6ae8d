"""A plain-text console progress bar: step, images/s and ETA.

On a terminal it redraws one line with a carriage return; otherwise (a log file, CI) it prints a
full line every `every` steps, and at least every `max_silence_s` seconds so a slow run's log
still shows it is alive.

The rate and ETA are steady-state figures: time spent inside `paused()` (evaluations,
checkpoints) is left out, and with `first_step_compiles` the clock starts only once the first
step (which compiles the train step) is done, so neither a minute of compilation nor an
evaluation makes a fast run look slow or its ETA hours long. Until there is such a measurement
the rate and ETA show "?".
"""

from __future__ import annotations

import contextlib
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
    `unit` names what is counted, `rate_unit` the rate (`images_per_step` per second).
    `first_step_compiles`: the rate is measured from the first `update` on (call it once that
    step has finished on the device), not from the bar's creation."""

    def __init__(self, total_steps: int, *, start_step: int = 0, images_per_step: int = 1,
                 stream=None, every: int = 50, active: bool = True, width: int = 24, unit: str = "step",
                 rate_unit: str = "img/s", max_silence_s: float = 60.0, first_step_compiles: bool = False,
                 clock=time.perf_counter):
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
        # The steady-state clock: (step, time) it counts from, and the paused seconds since.
        self._steady = None if first_step_compiles else (start_step, self._t0)
        self._paused = 0.0

    @contextlib.contextmanager
    def paused(self):
        """Leave the time spent inside out of the rate and ETA (evaluations, checkpoints)."""
        start = self._clock()
        try:
            yield
        finally:
            self._paused += self._clock() - start

    def steps_per_second(self, step: int) -> float | None:
        """The steady-state rate at `step`, None before there is a measurement."""
        if self._steady is None:
            return None
        from_step, from_time = self._steady
        seconds = self._clock() - from_time - self._paused
        done = step - from_step
        return done / seconds if done > 0 and seconds > 0 else None

    def line(self, step: int, extra: str = "") -> str:
        """The text shown for `step`."""
        elapsed = self._clock() - self._t0
        rate = self.steps_per_second(step)
        filled = int(self.width * step / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        rate_text = f"{rate * self.images_per_step:,.0f}" if rate else "?"
        eta_text = format_duration((self.total - step) / rate) if rate else "?"
        text = (f"[{bar}] {self.unit} {step}/{self.total} {rate_text} {self.rate_unit} "
                f"elapsed {format_duration(elapsed)} eta {eta_text}")
        return f"{text} {extra}".rstrip()

    def update(self, step: int, extra: str = "") -> None:
        """Show progress after `step` (on a non-terminal, every `every` steps, the last, and
        whenever `max_silence_s` seconds have passed since the last line)."""
        if self._steady is None:  # the first step is done: the steady-state clock starts
            self._steady, self._paused = (step, self._clock()), 0.0
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
