"""Probing and decoding user audio with ffprobe/ffmpeg: no shell, local files only, time-boxed.

Every ffmpeg/ffprobe run on a user's file gets the same fences: only the `file` protocol, only the
demuxers and decoders we accept (so a playlist or a container that references other files is
refused by ffmpeg itself), a wall-clock timeout and an address-space limit (prlimit), so a file
whose header lies can neither run for ever nor allocate without bound.

No Django here, so the worker and the benchmarks share it as it is.
"""

import json
import re
import subprocess
import threading
from dataclasses import dataclass

import numpy as np

PROBE_TIMEOUT_SECONDS = 30
OUTPUT_BLOCK_BYTES = 256 * 1024
# ffmpeg itself maps about 300 MB of shared libraries; decoding audio needs little more.
MEMORY_LIMIT_BYTES = 768 * 1024 * 1024

# What the file's first bytes say it is, and the ffprobe container names each may turn out to be.
FAMILY_FORMATS = {
    "mp3": {"mp3"},
    "aac": {"aac"},
    "wav": {"wav"},
    "flac": {"flac"},
    "ogg": {"ogg"},
    "mp4": {"mov,mp4,m4a,3gp,3g2,mj2"},
    "aiff": {"aiff"},
    "webm": {"matroska,webm"},
}
ALLOWED_FORMATS = set().union(*FAMILY_FORMATS.values())
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
# The same lists in ffmpeg's own terms (demuxer and decoder names), enforced by ffmpeg itself.
# ffprobe opens a decoder for an album cover too (JPEG or PNG); it is never decoded.
_DEMUXERS = "mp3,aac,wav,flac,ogg,mov,matroska,aiff"
_DECODERS = ",".join(sorted(ALLOWED_CODECS | {"mp3float", "aac_fixed", "libopus", "mjpeg", "png"}))
_SAFE_INPUT = [
    "-protocol_whitelist", "file",
    "-format_whitelist", _DEMUXERS,
    "-codec_whitelist", _DECODERS,
]  # fmt: skip

MSG_NOT_AUDIO = "This file is not audio we can read. Upload a WAV, MP3, FLAC, OGG, Opus or M4A file."
MSG_SLOW_PROBE = "This file took too long to read; it does not look like a normal audio file."
MSG_SLOW_DECODE = "Decoding this file took too long."
MSG_UNDECODABLE = "This file could not be decoded as audio; it may be damaged."
# Web page markup: a tag a browser would act on, followed by more text. Audio data hits such a
# run of bytes by chance far less than once in a billion files; metadata text rarely holds tags.
_MARKUP = re.compile(
    rb"<(?:!doctype|html|head|body|script|iframe|frame|object|embed|svg|img|style|link|meta|form|base"
    rb"|a\s|\?php|\?xml)[\s/>][\t\n\r\x20-\x7e]{8}",
    re.IGNORECASE,
)
MARKUP_WINDOW = 64  # bytes kept between blocks so a tag split across two reads is still seen


class AudioError(Exception):
    """A file that is not usable audio; the message is written for the person who uploaded it."""


@dataclass(frozen=True)
class AudioInfo:
    format_name: str
    codec: str
    duration: float
    sample_rate: int
    channels: int


def sniff_family(path: str) -> str:
    """The kind of audio file the first bytes announce (`mp3`, `wav`, ...); raises if none.

    Decided from magic bytes before any decoder runs: text, web pages, executables and
    playlists renamed to `.mp3` stop here.
    """
    with open(path, "rb") as handle:
        head = handle.read(64)
        if head[:3] == b"ID3" and len(head) >= 10:
            # An ID3v2 tag (mp3, aac, sometimes flac) comes first; look at what follows it.
            size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
            footer = 10 if head[5] & 0x10 else 0
            handle.seek(10 + size + footer)
            head = handle.read(4096).lstrip(b"\x00")[:64]  # some taggers pad past the tag's size
            family = _family(head)
            if family in ("mp3", "aac", "flac"):
                return family
            raise AudioError(MSG_NOT_AUDIO)
    family = _family(head)
    if family is None:
        raise AudioError(MSG_NOT_AUDIO)
    return family


def _family(head: bytes) -> str | None:
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if len(head) >= 2 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:
            return "aac"  # ADTS frame sync
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
            return "mp3"  # MPEG audio frame sync, layer I-III
    return None


def find_markup(block: bytes) -> bool:
    """Whether a block of the file holds web page markup (a polyglot a browser could render)."""
    return _MARKUP.search(block) is not None


def probe(path: str) -> AudioInfo:
    """Read the container header: exactly one audio stream of an allowed codec.

    A duration of 0 means the header states none; check_complete then measures it.
    """
    command = [
        "ffprobe", "-v", "error", *_SAFE_INPUT,
        "-print_format", "json", "-show_format", "-show_streams", path,
    ]  # fmt: skip
    result = _run(command, PROBE_TIMEOUT_SECONDS, slow=MSG_SLOW_PROBE, failed=MSG_NOT_AUDIO)
    try:
        data = json.loads(result or b"{}")
    except ValueError:
        raise AudioError(MSG_NOT_AUDIO) from None
    fmt = data.get("format", {})
    streams = data.get("streams", [])
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if fmt.get("format_name") not in ALLOWED_FORMATS or len(audio) != 1:
        raise AudioError(MSG_NOT_AUDIO)
    if len(audio) != len([s for s in streams if not _is_cover_art(s)]):
        raise AudioError("This file holds video or other streams besides the audio. Upload an audio file.")
    stream = audio[0]
    if stream.get("codec_name") not in ALLOWED_CODECS:
        raise AudioError(f"The audio codec {stream.get('codec_name')!r} is not supported.")
    duration = _float(stream.get("duration")) or _float(fmt.get("duration"))
    sample_rate = int(_float(stream.get("sample_rate")))
    channels = int(stream.get("channels") or 0)
    if sample_rate <= 0 or channels <= 0:
        raise AudioError("This file contains no audio.")
    return AudioInfo(fmt["format_name"], stream["codec_name"], max(0.0, duration), sample_rate, channels)


def _is_cover_art(stream: dict) -> bool:
    """An album cover is a video stream marked as an attached picture; it is ignored, not refused."""
    return bool(stream.get("disposition", {}).get("attached_pic"))


def extract_audio(source: str, target: str, timeout: float) -> None:
    """Copy the first audio stream of a downloaded file into a Matroska file of its own.

    For what sites serve: a video with its sound, or MPEG-TS from an HLS stream. The codec is
    copied, never re-encoded; the same fences as every other run (the local file only, our
    demuxers and MPEG-TS, only audio decoders), and the result is then checked like an upload.
    """
    command = [
        "ffmpeg", "-nostdin", "-v", "error",
        "-protocol_whitelist", "file", "-format_whitelist", f"{_DEMUXERS},mpegts",
        "-codec_whitelist", _DECODERS, "-i", source,
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-c:a", "copy", "-f", "matroska", "-y", target,
    ]  # fmt: skip
    _run(command, timeout, slow=MSG_SLOW_DECODE, failed=MSG_NOT_AUDIO)


def decode(
    path: str, max_seconds: float, timeout: float, sample_rate: int = 44100, channels: int = 2
) -> tuple[np.ndarray, int]:
    """Decode the audio to float32 `[channels, samples]` at `sample_rate`, cut at `max_seconds`.

    ffmpeg resamples and mixes down while it decodes: 5.1 goes through its standard downmix
    matrix (centre and surrounds folded in, not dropped), mono is copied to both sides, and a
    96 kHz multichannel file never exists in memory at its own size. `-t` cuts decoding at
    `max_seconds` even when a header lies about the length.
    """
    command = [
        "ffmpeg", "-nostdin", "-v", "error", *_SAFE_INPUT, "-i", path,
        "-map", "0:a:0", "-t", f"{max_seconds:.3f}", "-ac", str(channels), "-ar", str(sample_rate),
        "-f", "f32le", "-acodec", "pcm_f32le", "-",
    ]  # fmt: skip
    samples = np.frombuffer(_ffmpeg(command, timeout), dtype=np.float32)
    usable = len(samples) - len(samples) % channels
    wav = samples[:usable].reshape(-1, channels).T.copy()
    if wav.shape[1] == 0:
        raise AudioError("This file contains no audio.")
    return wav, sample_rate


def decoded_duration(path: str, max_seconds: float, timeout: float) -> float:
    """Seconds of audio actually present, up to `max_seconds`, by decoding (cheaply, 8 kHz mono)."""
    rate = 8000
    command = [
        "ffmpeg", "-nostdin", "-v", "error", *_SAFE_INPUT, "-i", path,
        "-map", "0:a:0", "-t", f"{max_seconds:.3f}", "-ac", "1", "-ar", str(rate), "-f", "s16le", "-",
    ]  # fmt: skip
    return _output_size(command, timeout) / 2 / rate


def check_complete(path: str, info: AudioInfo, max_seconds: float, timeout: float) -> float:
    """The seconds of audio the file really holds, if they match what its header promises.

    Decoders return the part that is there without an error, so lengths are compared: far
    less audio is a cut-off download; far more is a header that lies (a decode bomb), found
    without decoding more than a little past the promised end. A header that states no length
    is decoded up to a second past `max_seconds`, so the caller can refuse what is too long.
    """
    allowance = 2.0 + info.duration * 0.1
    cap = info.duration + allowance + 1.0 if info.duration > 0 else max_seconds + 1.0
    present = decoded_duration(path, cap, timeout)
    if present < 0.05:
        raise AudioError("This file contains no audio we can decode.")
    if info.duration <= 0:
        return present
    if present < info.duration * 0.98 - 0.5:
        raise AudioError(
            f"This file looks cut off: its header promises {_clock(info.duration)} "
            f"but only {_clock(present)} of audio is there. Upload the complete file."
        )
    if present > info.duration + allowance:
        raise AudioError(
            f"This file holds more audio than its header says ({_clock(info.duration)}); it may be "
            "damaged or crafted. Export it again from your audio program and upload that."
        )
    return present


def _ffmpeg(command: list[str], timeout: float) -> bytes:
    """Run an ffmpeg decode (argument list, never a shell) and return what it wrote to stdout."""
    return _run(command, timeout, slow=MSG_SLOW_DECODE, failed=MSG_UNDECODABLE)


def _output_size(command: list[str], timeout: float) -> int:
    """How many bytes an ffmpeg decode writes to stdout, counted as they come and never kept.

    Runs in the web process for every upload: 100 minutes at 8 kHz mono is 97 MB, which
    `_run` would hold twice over (the pieces, then the joined bytes).
    """
    process = subprocess.Popen(
        _limited(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    expired = threading.Event()
    timer = threading.Timer(timeout, lambda: (expired.set(), process.kill()))
    timer.start()
    size = 0
    try:
        with process.stdout:
            for block in iter(lambda: process.stdout.read(OUTPUT_BLOCK_BYTES), b""):
                size += len(block)
        process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    if expired.is_set():
        raise AudioError(MSG_SLOW_DECODE)
    if process.returncode != 0:
        raise AudioError(MSG_UNDECODABLE)
    return size


def _run(command: list[str], timeout: float, slow: str, failed: str) -> bytes:
    """Run ffmpeg or ffprobe under the address-space limit; `slow` and `failed` are what users see."""
    try:
        result = subprocess.run(_limited(command), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise AudioError(slow) from None
    if result.returncode != 0:
        raise AudioError(failed)
    return result.stdout


def _limited(command: list[str]) -> list[str]:
    """`command` under the address-space limit every ffmpeg and ffprobe run here gets."""
    return ["prlimit", f"--as={MEMORY_LIMIT_BYTES}", "--", *command]


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"
