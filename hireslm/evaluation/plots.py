"""Spectrogram figures: degraded input, restored output and clean reference side by side.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hireslm.evaluation.metrics import log_power_spectrogram
from hireslm.fileio import atomic_path

DYNAMIC_RANGE_DB = 90.0


def plot_spectrograms(
    panels: Sequence[tuple[str, np.ndarray]],
    sample_rate: int,
    path: str | Path,
    title: str = "",
) -> Path:
    """Write a PNG with one log-power spectrogram per panel, on one colour scale.

    Args:
        panels: ``(label, wave)`` pairs, each wave ``(N,)`` at ``sample_rate``.
        path: the PNG to write (parent folders are made).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    specs = [10 * log_power_spectrogram(wave) for _, wave in panels]  # dB
    top = max(float(s.max()) for s in specs)
    figure = Figure(figsize=(4.0 * len(panels), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (label, wave), spec in zip(axes, panels, specs, strict=True):
        seconds = wave.shape[-1] / sample_rate
        image = ax.imshow(spec, origin="lower", aspect="auto", cmap="magma",
                          vmin=top - DYNAMIC_RANGE_DB, vmax=top,
                          extent=(0.0, seconds, 0.0, sample_rate / 2000))
        ax.set_title(label)
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("frequency (kHz)")
    figure.colorbar(image, ax=list(axes), label="dB")
    if title:
        figure.suptitle(title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=90, format="png")
    return Path(path)
