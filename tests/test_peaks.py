"""Waveform peaks and playback previews: computed by the worker for every stem, stored with it."""

import numpy as np
import pytest
import soundfile
from django.urls import reverse

from jobs.engine import audio
from jobs.engine.peaks import PEAKS_PER_SECOND, compute_peaks
from jobs.models import Job
from tests.conftest import media_files

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]


def test_peaks_are_the_loudest_sample_of_either_channel_per_window():
    rate = 1000  # 20 samples per window
    samples = np.zeros((2, 50), dtype=np.float32)
    samples[0, 3] = -0.5  # window 0: left channel, negative
    samples[1, 25] = 0.25  # window 1: right channel
    samples[0, 45] = 2.0  # window 2 (short, 10 samples): over full scale, shown as full
    assert compute_peaks(samples, rate) == [0.5, 0.25, 1.0]
    assert compute_peaks(samples, rate, scale=0.5) == [0.25, 0.125, 1.0]
    assert compute_peaks(np.full((2, 44100), 0.12345, dtype=np.float32), 44100) == [0.123] * PEAKS_PER_SECOND


def upload(client, path, **options):
    with path.open("rb") as handle:
        response = client.post(reverse("job_create"), {"files": handle, **options})
    assert response.status_code == 302
    return Job.objects.latest("created_at")


@pytest.mark.slow
def test_lossless_stems_get_peaks_of_the_stored_audio_and_an_mp3_preview_the_player_streams(
    owner_client, make_audio, run_worker, media_root
):
    job = upload(owner_client, make_audio("Song.wav", seconds=2), output_format="wav32f", quality="fast")
    assert run_worker().returncode == 0
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message

    for stem in job.stems.all():
        stored, rate = soundfile.read(stem.file.path, dtype="float32", always_2d=True)
        assert stem.peaks == pytest.approx(compute_peaks(stored.T, rate), abs=0.0015), stem.name
        assert len(stem.peaks) == 2 * PEAKS_PER_SECOND
        info = audio.probe(stem.preview.path)
        assert info.codec == "mp3"
        assert stem.preview.size == pytest.approx(2 * 192_000 / 8, rel=0.15)

        url = reverse("stem_file", args=[job.pk, stem.name])
        played = owner_client.get(url + "?play")
        assert played["Content-Type"] == "audio/mpeg"
        assert "attachment" not in played["Content-Disposition"]
        assert b"".join(played.streaming_content) == stem.preview.read()
        downloaded = owner_client.get(url)
        assert downloaded["Content-Type"] == "audio/wav"
        assert downloaded["Content-Disposition"] == f'attachment; filename="Song - {stem.name}.wav"'

    owner_client.post(reverse("job_delete", args=[job.pk]))
    assert media_files(media_root) == []
