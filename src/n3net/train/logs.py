"""Training logs: a CSV file, optional TensorBoard scalars, a progress display and PNG curves.

The CSV columns are ``step, epoch, lr, loss``, the task's validation columns (e.g. ``val_psnr``)
and ``elapsed_s, imgs_per_s`` (samples per second). Only rank 0 creates a :class:`TrainLog`.
TensorBoard and matplotlib are imported lazily and are optional: without them the run goes on and
says once what it skipped.
"""

from __future__ import annotations

import csv
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["TrainLog", "csv_fields", "plot_curves", "read_log"]
_LINE_SECONDS = 30.0  # "lines" progress: at most one line per that many seconds
_BAR_SECONDS = 1.0  # the bar between log rows


def read_log(path: str | Path) -> list[dict[str, str]]:
    """Return the rows of a training CSV log (empty when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def csv_fields(columns: Sequence[str]) -> tuple[str, ...]:
    """The CSV header around a task's validation columns.

    Example:
        >>> csv_fields(["val_psnr"])
        ('step', 'epoch', 'lr', 'loss', 'val_psnr', 'elapsed_s', 'imgs_per_s')
    """
    return ("step", "epoch", "lr", "loss", *columns, "elapsed_s", "imgs_per_s")


def _truncate_log(path: Path, last_step: int, fields: Sequence[str]) -> None:
    """Drop rows after ``last_step`` (left by a run killed after its last checkpoint)."""
    rows = [row for row in read_log(path) if int(row["step"]) <= last_step]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


class TrainLog:
    """CSV rows, TensorBoard scalars and a progress bar or periodic lines.

    Args:
        out_dir: run folder; writes ``log.csv`` and TensorBoard files under ``tensorboard/``.
        start_step: the step training starts from (rows after it are dropped on resume).
        columns: the task's validation columns.
        tensorboard: write TensorBoard scalars when the package is installed.
        progress: ``"auto"``, ``"bar"``, ``"lines"`` or ``"none"``.
    """

    def __init__(
        self,
        out_dir: Path,
        start_step: int,
        columns: Sequence[str] = ("val_psnr",),
        tensorboard: bool = True,
        progress: str = "auto",
    ) -> None:
        self.path = out_dir / "log.csv"
        self.fields = csv_fields(columns)
        self._scalars = ("loss", "lr", *columns, "imgs_per_s", "epoch")
        if start_step > 0 and self.path.is_file():
            _truncate_log(self.path, start_step, self.fields)
        else:
            with self.path.open("w", newline="") as file:
                csv.DictWriter(file, fieldnames=self.fields).writeheader()
        self._file = self.path.open("a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=self.fields)
        self._writer = self._tensorboard(out_dir, start_step) if tensorboard else None
        if progress == "auto":
            progress = "bar" if sys.stderr.isatty() else "lines"
        self.mode = progress
        self._bar: Any = None
        self._last_line = self._last_bar = -math.inf
        if progress == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=1000,
                bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}",
                dynamic_ncols=True,
            )

    @staticmethod
    def _tensorboard(out_dir: Path, start_step: int) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("tensorboard is not installed: no TensorBoard scalars", file=sys.stderr)
            return None
        return SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_step or None)

    def row(self, values: dict[str, float | int | None]) -> None:
        """Append one CSV row (missing or None fields stay empty) and its TensorBoard scalars."""
        self._csv.writerow({key: _format(values.get(key)) for key in self.fields})
        self._file.flush()
        if self._writer is not None:
            step = int(values["step"] or 0)
            for key in self._scalars:
                if values.get(key) is not None:
                    self._writer.add_scalar(f"train/{key}", values[key], step)

    def progress_due(self) -> bool:
        """Whether :meth:`progress` would show something now: for updates between log rows.

        The bar moves at most every second then, the lines come at most every 30 s, so that a
        run of slow steps (or a long ``log_every``) still shows it is alive.
        """
        now = time.monotonic()
        if self._bar is not None:
            return now - self._last_bar >= _BAR_SECONDS
        return self.mode == "lines" and now - self._last_line >= _LINE_SECONDS

    def progress(self, fraction: float, step: int, loss: float, lr: float, rate: float) -> None:
        """Update the progress bar, or print a line at most every 30 s."""
        text = f"step {step} loss {loss:.3e} lr {lr:.2e} {rate:.0f} img/s"
        if self._bar is not None:
            self._bar.n = min(1000, int(fraction * 1000))
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.refresh()
            self._last_bar = time.monotonic()
        elif self.mode == "lines" and time.monotonic() - self._last_line >= _LINE_SECONDS:
            self._last_line = time.monotonic()
            print(f"[{100 * fraction:5.1f}%] {text}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        """Print a line (whatever the progress mode) without breaking the progress bar."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Flush and close everything."""
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()
        self._file.close()


def _format(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


def plot_curves(
    log_path: str | Path, png_path: str | Path, title: str = "", metric: str = "val_psnr"
) -> bool:
    """Plot the training loss and the validation ``metric`` column against steps into a PNG.

    Returns:
        False (with a warning) when matplotlib is missing or the log is empty.
    """
    rows = read_log(log_path)
    if not rows:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("matplotlib is not installed: no curve PNG", stacklevel=2)
        return False
    loss = [(int(r["step"]), float(r["loss"])) for r in rows if r["loss"]]
    val = [(int(r["step"]), float(r[metric])) for r in rows if r.get(metric)]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if loss:
        left.semilogy(*zip(*loss, strict=True), lw=0.8)
    left.set(xlabel="step", ylabel="training loss (MSE)", title="loss")
    if val:
        right.plot(*zip(*val, strict=True), marker="o", ms=3)
    right.set(xlabel="step", ylabel=metric, title="validation (held-out data)")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return True
