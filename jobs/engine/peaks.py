"""Waveform peaks: the loudest sample per short window, so a page draws a stem without its audio.

No Django here: the worker computes them from the stem it already holds in memory.
"""

import numpy as np

# Windows per second of audio; the page is told this figure with the peaks it draws.
PEAKS_PER_SECOND = 50


def compute_peaks(samples: np.ndarray, sample_rate: int, scale: float = 1.0) -> list[float]:
    """max |sample| over both channels per 1/PEAKS_PER_SECOND s window, 0..1, to 3 decimals.

    `samples` is `[channels, samples]`; `scale` is the gain the encoder applies (demucs rescales a
    stem that would clip), so the peaks describe the file as stored. The last window may be short.
    """
    loudest = np.abs(np.asarray(samples, dtype=np.float32)).max(axis=0) * scale
    window = max(1, sample_rate // PEAKS_PER_SECOND)
    padded = np.pad(loudest, (0, -len(loudest) % window))
    peaks = padded.reshape(-1, window).max(axis=1)
    # Rounded as float64: float32's 0.123 would be written out as 0.12300000339746475.
    return np.round(np.clip(peaks, 0.0, 1.0).astype(np.float64), 3).tolist()


def encoder_scale(samples: np.ndarray) -> float:
    """The factor demucs' `clip="rescale"` multiplies a stem by before encoding it (1 unless it clips)."""
    return 1.0 / max(1.01 * float(np.abs(samples).max(initial=0.0)), 1.0)
