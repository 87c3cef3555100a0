"""Separation options: each model, two-stem mode, each output format, several files at once."""

import django_rq
import numpy as np
import pytest
import soundfile
from django.conf import settings
from django.urls import reverse

from jobs.background.tasks import job_timeout
from jobs.engine import audio
from jobs.engine.peaks import PEAKS_PER_SECOND
from jobs.models import Job
from jobs.options import MODELS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]


def post(client, paths, **options):
    handles = [path.open("rb") for path in paths]
    try:
        return client.post(reverse("job_create"), {"files": handles, **options})
    finally:
        for handle in handles:
            handle.close()


def test_form_explains_each_model_its_stems_and_speed(owner_client):
    page = owner_client.get(reverse("job_list")).content.decode()
    for model in MODELS.values():
        assert f'value="{model.name}"' in page
        assert ", ".join(model.stems) in page
    assert "about 4x slower" in page
    assert "Vocals + instrumental" in page


@pytest.mark.slow
def test_each_model_gives_its_own_stems(owner_client, make_audio, run_worker):
    source = make_audio("song.wav", seconds=3)
    for model in MODELS:
        post(owner_client, [source], model=model, quality="fast")

    result = run_worker()

    assert result.returncode == 0, result.stderr
    for job in Job.objects.all():
        assert job.status == "succeeded", (job.model_name, job.error_message)
        names = [stem.name for stem in job.stems.all()]
        assert names == list(MODELS[job.model_name].stems)
        for stem in job.stems.all():
            info = audio.probe(stem.file.path)
            assert (info.codec, info.sample_rate, info.channels) == ("mp3", 44100, 2)
            assert info.duration == pytest.approx(3, abs=0.06)
            assert len(stem.peaks) == 3 * PEAKS_PER_SECOND, stem.name
            assert 0 < max(stem.peaks) <= 1, stem.name
            assert not stem.preview, "an mp3 stem is its own preview"
    assert result.stderr.count("Loaded model htdemucs_ft ") == 1


@pytest.mark.parametrize(
    ("output_format", "codec", "extension"),
    [
        ("wav16", "pcm_s16le", "wav"),
        ("wav24", "pcm_s24le", "wav"),
        ("wav32f", "pcm_f32le", "wav"),
        ("flac", "flac", "flac"),
    ],
)
@pytest.mark.slow
def test_lossless_formats(owner_client, make_audio, run_worker, output_format, codec, extension):
    post(owner_client, [make_audio("song.flac", seconds=2)], output_format=output_format, quality="fast")
    assert run_worker().returncode == 0
    job = Job.objects.get()
    assert job.status == "succeeded", job.error_message
    for stem in job.stems.all():
        assert stem.file.name.endswith(f"/{stem.name}.{extension}")
        info = audio.probe(stem.file.path)
        assert (info.codec, info.sample_rate, info.channels) == (codec, 44100, 2)
        assert info.duration == pytest.approx(2, abs=0.01)
        assert len(stem.peaks) == 2 * PEAKS_PER_SECOND, stem.name
        assert 0 < max(stem.peaks) <= 1, stem.name
        assert stem.preview.name == f"jobs/{job.pk}/previews/{stem.name}.mp3"
        preview = audio.probe(stem.preview.path)
        assert (preview.codec, preview.sample_rate, preview.channels) == ("mp3", 44100, 2)
    if output_format == "flac":
        assert soundfile.info(job.stems.first().file.path).subtype == "PCM_24"


@pytest.mark.slow
def test_mp3_bitrate_is_honoured(owner_client, make_audio, run_worker):
    post(
        owner_client,
        [make_audio("song.wav", seconds=4)],
        output_format="mp3",
        mp3_bitrate="128",
        quality="fast",
    )
    assert run_worker().returncode == 0
    stem = Job.objects.get().stems.first()
    assert stem.size == pytest.approx(4 * 128_000 / 8, rel=0.1)


@pytest.mark.slow
def test_two_stem_mode_gives_the_stem_and_the_sum_of_the_rest(owner_client, make_audio, run_worker):
    source = make_audio("song.wav", seconds=3)
    common = {"output_format": "wav32f", "quality": "fast"}
    post(owner_client, [source], **common)
    post(owner_client, [source], two_stems="vocals", **common)
    assert run_worker().returncode == 0

    full = Job.objects.get(options__two_stems="")
    karaoke = Job.objects.get(options__two_stems="vocals")
    assert [stem.name for stem in karaoke.stems.all()] == ["vocals", "no_vocals"]
    read = {
        (job.pk, s.name): soundfile.read(s.file.path)[0] for job in (full, karaoke) for s in job.stems.all()
    }
    rest = sum(read[(full.pk, name)] for name in ("drums", "bass", "other"))
    np.testing.assert_allclose(read[(karaoke.pk, "no_vocals")], rest, atol=1e-5)
    np.testing.assert_allclose(read[(karaoke.pk, "vocals")], read[(full.pk, "vocals")], atol=1e-6)
    page = owner_client.get(karaoke.get_absolute_url()).content.decode()
    assert "instrumental" in page


def test_two_stem_choice_must_exist_in_the_model(owner_client, make_audio):
    response = post(owner_client, [make_audio("song.wav", seconds=1)], model="htdemucs", two_stems="guitar")
    assert response.status_code == 400
    assert "has no guitar stem" in response.content.decode()
    assert not Job.objects.exists()


def test_several_files_make_one_job_each_with_the_same_options(owner_client, make_audio):
    files = [make_audio(f"track{i}.wav", seconds=1 + i) for i in range(3)]
    response = post(owner_client, files, model="htdemucs_6s", quality="best", output_format="flac")
    assert response.status_code == 302
    assert response["Location"] == reverse("job_list")
    jobs = Job.objects.order_by("original_name")
    assert [job.original_name for job in jobs] == ["track0.wav", "track1.wav", "track2.wav"]
    assert {(job.model_name, job.options["quality"], job.options["output_format"]) for job in jobs} == {
        ("htdemucs_6s", "best", "flac")
    }
    assert len(django_rq.get_queue(settings.STEMSITE_QUEUE).job_ids) == 3


def test_one_bad_file_among_several_is_reported_and_the_rest_queued(owner_client, make_audio, tmp_path):
    bad = tmp_path / "notes.mp3"
    bad.write_text("not audio")
    response = post(owner_client, [make_audio("good.wav", seconds=1), bad])
    assert [job.original_name for job in Job.objects.all()] == ["good.wav"]
    page = owner_client.get(response["Location"]).content.decode()
    assert "Not uploaded: notes.mp3: This file is not audio we can read" in page
    assert "Queued 1 track." in page


def test_timeout_scales_with_model_cost_and_quality():
    slow = Job(model_name="htdemucs_ft", options={"quality": "best"}, duration_seconds=100)
    fast = Job(model_name="htdemucs", options={"quality": "fast"}, duration_seconds=100)
    assert job_timeout(100, slow.job_options) > 4 * job_timeout(100, fast.job_options) / 2
    assert job_timeout(100, fast.job_options) > job_timeout(10, fast.job_options)
