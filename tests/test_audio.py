"""ffmpeg on user files: fenced by ffmpeg's own whitelists, a length cap, a timeout and a memory
limit; unusual rates and channel layouts still separate into 44.1 kHz stereo stems."""

import ctypes
import os
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.urls import reverse

from jobs.engine import audio
from jobs.models import Job
from tests.conftest import flac_claiming, media_files

pytestmark = pytest.mark.database_agnostic


class OpenWatch:
    """Records, through inotify, whether any process opens a file."""

    IN_OPEN = 0x20

    def __init__(self, path: Path):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK)
        assert self.fd >= 0
        assert libc.inotify_add_watch(self.fd, str(path).encode(), self.IN_OPEN) >= 0

    def opened(self) -> bool:
        try:
            return len(os.read(self.fd, 4096)) > 0
        except BlockingIOError:
            return False


@pytest.fixture
def hls_playlist(tmp_path, make_audio):
    """An HLS playlist renamed `.mp3` that points at a local WAV, and a watch on that WAV."""
    target = make_audio("secret.wav", seconds=2)
    playlist = tmp_path / "playlist.mp3"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n{target}\n#EXT-X-ENDLIST\n")
    return playlist, target, OpenWatch(target)


def _ffprobe_without_whitelists(path: Path) -> None:
    subprocess.run(["ffprobe", "-v", "quiet", "-protocol_whitelist", "file", str(path)], check=False)


def test_playlist_is_refused_by_ffprobe_itself_without_opening_what_it_points_at(hls_playlist):
    playlist, target, watch = hls_playlist

    with pytest.raises(audio.AudioError, match="not audio we can read"):
        audio.probe(str(playlist))
    with pytest.raises(audio.AudioError, match="could not be decoded"):
        audio.decode(str(playlist), max_seconds=10, timeout=30)

    assert not watch.opened(), "ffmpeg opened the file the playlist points at"
    _ffprobe_without_whitelists(playlist)
    assert watch.opened(), "control: without the whitelists ffprobe follows the playlist"


@pytest.mark.django_db
def test_playlist_renamed_mp3_upload_is_refused_and_its_target_never_opened(
    owner_client, hls_playlist, media_root
):
    playlist, target, watch = hls_playlist
    with playlist.open("rb") as handle:
        response = owner_client.post(reverse("job_create"), {"files": handle}, headers={"HX-Request": "true"})

    assert "not audio we can read" in response.content.decode()
    assert not Job.objects.exists()
    assert media_files(media_root) == []
    assert not watch.opened()


def test_decode_stops_at_its_length_limit_when_the_header_lies(hour_of_silence, tmp_path):
    lying = flac_claiming(hour_of_silence, tmp_path / "lying.flac", seconds=10)
    assert audio.probe(str(lying)).duration == pytest.approx(10)

    wav, rate = audio.decode(str(lying), max_seconds=3, timeout=30)

    assert wav.shape == (2, 3 * rate)


def test_decoding_under_a_tight_memory_limit_fails_cleanly(make_audio, monkeypatch):
    path = make_audio("song.flac", seconds=1)
    assert audio.decode(str(path), max_seconds=5, timeout=30)[0].shape[1] == 44100
    monkeypatch.setattr(audio, "MEMORY_LIMIT_BYTES", 64 * 1024 * 1024)

    with pytest.raises(audio.AudioError, match="could not be decoded"):
        audio.decode(str(path), max_seconds=5, timeout=30)


def test_decoding_past_its_timeout_is_stopped(hour_of_silence):
    with pytest.raises(audio.AudioError, match="took too long"):
        audio.decode(str(hour_of_silence), max_seconds=3600, timeout=0.2)


def five_one(path: Path, centre_only: bool = False, seconds: float = 1.0, rate: int = 48000) -> Path:
    """A 5.1 FLAC (FL FR FC LFE BL BR); with `centre_only`, sound only in the centre channel."""
    t = np.arange(int(seconds * rate)) / rate
    channels = np.zeros((len(t), 6), dtype=np.float32)
    channels[:, 2] = 0.5 * np.sin(2 * np.pi * 440 * t)
    if not centre_only:
        channels[:, [0, 1, 4, 5]] = 0.2 * np.sin(2 * np.pi * 220 * t)[:, None]
    source = path.with_suffix(".wav")
    soundfile.write(source, channels, rate)
    command = ["ffmpeg", "-v", "error", "-y", "-channel_layout", "5.1", "-i", str(source), str(path)]
    subprocess.run(command, check=True)
    return path


def test_surround_downmix_keeps_the_centre_channel(tmp_path):
    """Taking the first two channels (demucs' convert_audio) would lose centre-panned vocals."""
    path = five_one(tmp_path / "centre.flac", centre_only=True)
    assert audio.probe(str(path)).channels == 6

    wav, rate = audio.decode(str(path), max_seconds=10, timeout=30)

    assert (wav.shape, rate) == ((2, 44100), 44100)
    left, right = np.sqrt((wav**2).mean(axis=1))
    assert left == pytest.approx(right, rel=0.01)
    assert left > 0.15, "the centre channel must reach both sides of the stereo mix"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_mono_low_and_high_rate_and_surround_tracks_separate_into_44k_stereo_stems(
    owner_client, make_audio, run_worker, tmp_path
):
    sources = {
        "mono.wav": make_audio("mono.wav", seconds=2, channels=1),
        "phone.flac": make_audio("phone.flac", seconds=2, rate=8000),
        "studio.wav": make_audio("studio.wav", seconds=2, rate=96000),
        "surround.flac": five_one(tmp_path / "surround.flac", seconds=2),
    }
    for path in sources.values():
        with path.open("rb") as handle:
            response = owner_client.post(reverse("job_create"), {"files": handle})
        assert response.status_code == 302, response.content.decode()[:500]

    result = run_worker()

    assert result.returncode == 0, result.stderr
    for job in Job.objects.all():
        assert job.status == "succeeded", (job.original_name, job.error_message)
        expected = audio.probe(str(sources[job.original_name])).duration
        assert job.stems.count() == 4
        for stem in job.stems.all():
            info = audio.probe(stem.file.path)
            assert (info.sample_rate, info.channels) == (44100, 2), job.original_name
            wav, rate = audio.decode(stem.file.path, max_seconds=60, timeout=30)
            assert wav.shape[1] / rate == pytest.approx(expected, abs=0.06), job.original_name


def test_measuring_the_decoded_length_keeps_none_of_the_decoded_audio(hour_of_silence):
    """An hour at 8 kHz mono is 58 MB of samples; only their count is needed."""
    tracemalloc.start()
    try:
        seconds = audio.decoded_duration(str(hour_of_silence), max_seconds=3700, timeout=120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds == pytest.approx(3600, abs=1)
    assert peak < 4 * 1024 * 1024, f"{peak / 1024 / 1024:.0f} MB held while decoding"
