"""Progress on the terminal: one updating line on a tty, plain lines otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total_steps: int, first_step: int = 0, enabled: bool = True, stream=None):
        self.total, self.first_step, self.enabled = total_steps, first_step, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()

    def update(self, step: int, epoch: int, loss: float, acc: float, img_per_s: float) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        done = max(step - self.first_step, 1)
        eta = elapsed / done * (self.total - step)
        text = (f"epoch {epoch + 1} step {step}/{self.total} loss {loss:.4f} acc {acc:.2f}% "
                f"{img_per_s:.0f} img/s ETA {_clock(eta)}")
        if self.tty:
            width = 30
            filled = int(width * step / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if self.enabled:
            self.stream.write(("\r\x1b[K" if self.tty else "") + text + "\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
