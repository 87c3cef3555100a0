"""Tempo and pitch changes of rendered audio with ffmpeg's `rubberband` filter (Rubber Band, run as
a separate ffmpeg process), for mix exports that honour the player's practice settings.

No Django here. The whole mix goes through one run, so every stem in it shares one time map: they
cannot drift apart, whatever is muted. The output is cut or padded to exactly the stretched length
(`samples / tempo`), so 50% tempo always gives twice the duration.
"""

import subprocess
import tempfile
from pathlib import Path

import numpy as np

# Rubber Band holds back part of its input until it is flushed: silence after the audio makes sure
# the last note is written out whole before the output is cut to length.
TAIL_SECONDS = 0.5


class StretchFailed(Exception):
    """ffmpeg could not stretch the audio (or ran out of time); the message is for the log."""


def rubberband_filter(tempo: float, semitones: float) -> str:
    """The ffmpeg filter for a tempo factor (0.85: slower) and a pitch shift in semitones.

    Channels are processed together (the stereo image stays put). The filter's "quality" pitch
    setting costs a third more time for a difference hard to hear in a mix, so it is left at its default.
    """
    pitch = 2 ** (semitones / 12)
    return f"rubberband=tempo={tempo:.6f}:pitch={pitch:.8f}:channels=together"


def stretch(wav: np.ndarray, sample_rate: int, tempo: float, semitones: float, timeout: float) -> np.ndarray:
    """`[channels, samples]` float32 played at `tempo` (1: as is) and shifted by `semitones`.

    Raises StretchFailed when ffmpeg fails or runs past `timeout` seconds.
    """
    channels, length = wav.shape
    target = int(round(length / tempo))
    tail = np.zeros((channels, int(TAIL_SECONDS * sample_rate)), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="stemsite-stretch-") as folder:
        source, result = Path(folder) / "in.f32", Path(folder) / "out.f32"
        np.ascontiguousarray(np.concatenate([wav, tail], axis=1).T, dtype=np.float32).tofile(source)
        command = [
            "ffmpeg", "-nostdin", "-v", "error", "-y",
            "-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", str(source),
            "-af", rubberband_filter(tempo, semitones), "-f", "f32le", "-acodec", "pcm_f32le", str(result),
        ]  # fmt: skip
        try:
            subprocess.run(command, capture_output=True, timeout=timeout, check=True)
        except subprocess.TimeoutExpired:
            raise StretchFailed(f"ffmpeg rubberband ran past {timeout:.0f} s") from None
        except subprocess.CalledProcessError as error:
            raise StretchFailed(
                f"ffmpeg rubberband: {error.stderr.decode(errors='replace')[-300:]}"
            ) from None
        out = np.fromfile(result, dtype=np.float32)
    out = out[: len(out) - len(out) % channels].reshape(-1, channels).T
    if out.shape[1] < target:
        out = np.pad(out, ((0, 0), (0, target - out.shape[1])))
    return np.ascontiguousarray(out[:, :target])
