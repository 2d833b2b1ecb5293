"""ViSQOL v3 in audio mode: an intrusive quality predictor that hears the whole band.

PESQ, ESTOI and DNSMOS take 16 kHz audio, so they cannot hear what a restoration puts above
8 kHz. ViSQOL's audio mode (Hines et al. 2015; Chinen et al. 2020, "ViSQOL v3") compares 32
gammatone bands, ERB-spaced up to Nyquist (centres 50 Hz to 20.8 kHz at 48 kHz, 7 of them
above 8 kHz), patch by patch (NSIM) and maps the similarities to MOS-LQO (1-5) with the
NU-SVR model that ships with it. Here through PyPI
``visqol-python`` (a pure-Python port that matches Google's C++ on its conformance set), whose
model lies inside the wheel: offline.

The signals are globally aligned by ViSQOL itself. A clip needs 45 analysis frames (80 ms
windows, 20 ms hops): 0.96 s at 48 kHz; a shorter one is undefined. The score of a signal
against itself is the model's ceiling, about 4.73, not 5.
"""

from __future__ import annotations

import numpy as np

from hireslm.evaluation.metrics import MetricUndefined, check_pair

VISQOL_RATE = 48000  # the rate of audio mode's model


class VisqolScorer:
    """``scorer(reference, estimate) -> MOS-LQO``; build one per evaluation and reuse it."""

    def __init__(self) -> None:
        try:
            from visqol import VisqolApi
        except ImportError as exc:
            raise ImportError(
                f"ViSQOL needs visqol-python ({exc}); pip install 'hireslm[eval]'"
            ) from exc
        self._api = VisqolApi()
        self._api.create(mode="audio")

    def __call__(
        self, reference: np.ndarray, estimate: np.ndarray, sample_rate: int = VISQOL_RATE
    ) -> float:
        """MOS-LQO (about 1 to 4.73) of ``estimate`` against ``reference``.

        Args:
            reference, estimate: ``(N,)`` at 48 kHz.
        Raises:
            MetricUndefined: silence, or a clip too short for one ViSQOL patch (0.96 s).
        """
        if sample_rate != VISQOL_RATE:
            raise ValueError(f"ViSQOL audio mode takes {VISQOL_RATE} Hz signals, "
                             f"got {sample_rate} Hz")
        check_pair(reference, estimate)
        try:
            result = self._api.measure_from_arrays(
                reference.astype(np.float64), estimate.astype(np.float64), VISQOL_RATE)
        except ValueError as exc:  # too short, or no patch of the reference found
            seconds = reference.size / VISQOL_RATE
            raise MetricUndefined(
                f"ViSQOL needs at least 0.96 s ({seconds:.2f} s here): {exc}") from exc
        return float(result.moslqo)
