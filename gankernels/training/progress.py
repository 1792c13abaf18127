"""A progress bar (no dependency beyond torch) for training runs.

On a terminal it redraws one line in place (at most every `tty_every` seconds); elsewhere (CI, a log file) it prints
a plain line every `every` seconds and at the end, so logs stay readable. The statistics may be tensors: they are read
only when a line is printed, so the steps in between run without waiting for the device.
"""

from __future__ import annotations

import sys
import time

import torch


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def scalars(stats: dict) -> dict:
    """stats with every tensor turned into a float (the only host sync of a training iteration's statistics)."""
    return {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in stats.items()}


class Progress:
    """progress.update(step, nimg, stats) after each training step; progress.close() at the end.

    The line shows the step, kimg (thousands of real images shown to D), sec/kimg over the recent window, elapsed and
    remaining time, and the losses in `stats`.
    """

    def __init__(self, total_steps: int, start_step: int = 0, stream=None, every: float = 10.0, enabled=True,
                 tty_every: float = 0.5):  # fmt: skip
        self.total = total_steps
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self.tty_every = tty_every
        self.enabled = enabled
        self.start_step = start_step
        self.t0 = time.perf_counter()
        self.last_print = float("-inf")
        self.window = []  # (time, nimg) of recent steps, for sec/kimg
        self.line = ""

    def update(self, step: int, nimg: int, stats: dict) -> None:
        """stats: name -> number or 0-d tensor; tensors are read (a host sync on a GPU) only when the line is
        printed: every `tty_every` seconds on a terminal, every `every` seconds elsewhere, and at the last step."""
        now = time.perf_counter()
        self.window.append((now, nimg))
        self.window = self.window[-20:]
        if not self.enabled:
            return
        every = self.tty_every if self.tty else self.every
        if now - self.last_print < every and step < self.total:
            return
        values = scalars(stats)  # waits for the step's device work, so the times below include it
        now = time.perf_counter()
        self.window[-1] = (now, nimg)
        sec_per_kimg = self.sec_per_kimg()
        done = step - self.start_step
        remaining = (now - self.t0) / done * (self.total - step) if done > 0 else 0.0
        parts = [f"step {step}/{self.total}", f"kimg {nimg / 1000:.2f}"]
        if sec_per_kimg is not None:
            parts.append(f"sec/kimg {sec_per_kimg:.1f}")
        parts.append(f"{format_duration(now - self.t0)} < {format_duration(remaining)}")
        parts += [f"{k} {v:.4g}" for k, v in values.items()]
        self.line = "  ".join(parts)
        if self.tty:
            self.stream.write("\r" + self.line + "\x1b[K")
        else:
            self.stream.write(self.line + "\n")
        self.stream.flush()
        self.last_print = now

    def sec_per_kimg(self) -> float | None:
        if len(self.window) < 2:
            return None
        (t0, n0), (t1, n1) = self.window[0], self.window[-1]
        return (t1 - t0) / ((n1 - n0) / 1000) if n1 > n0 else None

    def log(self, message: str) -> None:
        """Print a message without breaking the bar."""
        if not self.enabled:
            return
        if self.tty and self.line:
            self.stream.write("\r\x1b[K")
        self.stream.write(message + "\n")
        if self.tty and self.line:
            self.stream.write(self.line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self.line:
            self.stream.write("\n")
            self.stream.flush()
