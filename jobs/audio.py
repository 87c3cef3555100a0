"""Probing and decoding user audio with ffprobe/ffmpeg: no shell, local files only, time-boxed.

No Django here, so the worker and the benchmarks share it as it is.
"""

import json
import subprocess
from dataclasses import dataclass

import numpy as np

PROBE_TIMEOUT_SECONDS = 30
# Containers and codecs we accept; anything else is refused before a worker sees it.
ALLOWED_FORMATS = {"wav", "mp3", "flac", "ogg", "mov,mp4,m4a,3gp,3g2,mj2", "aac", "matroska,webm", "aiff"}
ALLOWED_CODECS = {
    "mp3",
    "flac",
    "vorbis",
    "opus",
    "aac",
    "alac",
    "pcm_s16le",
    "pcm_s24le",
    "pcm_s32le",
    "pcm_f32le",
    "pcm_f64le",
    "pcm_u8",
    "pcm_s16be",
    "pcm_s24be",
    "pcm_s32be",
}
_SAFE_INPUT = ["-protocol_whitelist", "file"]


class AudioError(Exception):
    """A file that is not usable audio; the message is written for the person who uploaded it."""


@dataclass(frozen=True)
class AudioInfo:
    format_name: str
    codec: str
    duration: float
    sample_rate: int
    channels: int


def probe(path: str) -> AudioInfo:
    """Read the container header: exactly one audio stream of an allowed codec, non-zero length."""
    command = [
        "ffprobe",
        "-v",
        "error",
        *_SAFE_INPUT,
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        path,
    ]
    try:
        result = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise AudioError(
            "This file took too long to read; it does not look like a normal audio file."
        ) from None
    if result.returncode != 0:
        raise AudioError(
            "This file is not audio we can read. Upload a WAV, MP3, FLAC, OGG, Opus or M4A file."
        )
    data = json.loads(result.stdout or b"{}")
    fmt = data.get("format", {})
    audio = [s for s in data.get("streams", []) if s.get("codec_type") == "audio"]
    if fmt.get("format_name") not in ALLOWED_FORMATS or len(audio) != 1:
        raise AudioError(
            "This file is not audio we can read. Upload a WAV, MP3, FLAC, OGG, Opus or M4A file."
        )
    stream = audio[0]
    if stream.get("codec_name") not in ALLOWED_CODECS:
        raise AudioError(f"The audio codec {stream.get('codec_name')!r} is not supported.")
    duration = _float(stream.get("duration")) or _float(fmt.get("duration"))
    sample_rate = int(_float(stream.get("sample_rate")))
    channels = int(stream.get("channels") or 0)
    if duration <= 0 or sample_rate <= 0 or channels <= 0:
        raise AudioError("This file contains no audio.")
    return AudioInfo(fmt["format_name"], stream["codec_name"], duration, sample_rate, channels)


def decode(path: str, max_seconds: float, timeout: float) -> tuple[np.ndarray, int]:
    """Decode the first audio stream to float32 `[channels, samples]` at its own sample rate.

    `-t` cuts decoding at `max_seconds` even when a header lies about the length.
    """
    info = probe(path)
    command = [
        "ffmpeg", "-nostdin", "-v", "error", *_SAFE_INPUT, "-i", path,
        "-map", "0:a:0", "-t", f"{max_seconds:.3f}", "-f", "f32le", "-acodec", "pcm_f32le", "-",
    ]  # fmt: skip
    samples = np.frombuffer(_ffmpeg(command, timeout), dtype=np.float32)
    usable = len(samples) - len(samples) % info.channels
    wav = samples[:usable].reshape(-1, info.channels).T.copy()
    if wav.shape[1] == 0:
        raise AudioError("This file contains no audio.")
    return wav, info.sample_rate


def decoded_duration(path: str, timeout: float) -> float:
    """Seconds of audio actually present, by decoding it all (cheaply, to 8 kHz mono)."""
    rate = 8000
    command = [
        "ffmpeg", "-nostdin", "-v", "error", *_SAFE_INPUT, "-i", path,
        "-map", "0:a:0", "-ac", "1", "-ar", str(rate), "-f", "s16le", "-",
    ]  # fmt: skip
    return len(_ffmpeg(command, timeout)) / 2 / rate


def check_complete(path: str, info: AudioInfo, timeout: float) -> None:
    """Refuse a file whose audio stops well before its header says (a cut-off download).

    Decoders return the part that is there without an error, so the length is compared instead.
    """
    present = decoded_duration(path, timeout)
    if present < 0.05:
        raise AudioError("This file contains no audio we can decode.")
    if present < info.duration * 0.98 - 0.5:
        raise AudioError(
            f"This file looks cut off: its header promises {_clock(info.duration)} "
            f"but only {_clock(present)} of audio is there. Upload the complete file."
        )


def _ffmpeg(command: list[str], timeout: float) -> bytes:
    """Run an ffmpeg decode (argument list, never a shell) and return what it wrote to stdout."""
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise AudioError("Decoding this file took too long.") from None
    if result.returncode != 0:
        raise AudioError("This file could not be decoded; it may be damaged.")
    return result.stdout


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"
