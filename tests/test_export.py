"""Mix export: the mixer's settings become one file rendered by a worker, once per distinct mix."""

import asyncio
import re

import django_rq
import numpy as np
import pytest
import soundfile
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.files import File
from django.urls import reverse

from jobs.background.exports import MSG_STEM_UNREADABLE, effective_gains, settings_key
from jobs.models import MixExport, Stem
from stemsite.asgi import application
from tests.conftest import media_files

pytestmark = pytest.mark.django_db(transaction=True)

RATE = 44100
NAMES = ("drums", "bass", "other", "vocals")


def test_effective_gains_solo_wins_several_solos_sum_mute_silences():
    gains = {"drums": 0.5, "bass": 1.0, "other": 2.0, "vocals": 0.8}
    assert effective_gains(gains, set(), set()) == gains
    assert effective_gains(gains, {"bass"}, set()) == {**gains, "bass": 0.0}
    assert effective_gains(gains, {"bass"}, {"vocals"}) == {"drums": 0, "bass": 0, "other": 0, "vocals": 0.8}
    assert effective_gains(gains, {"vocals"}, {"vocals", "drums"}) == {
        "drums": 0.5, "bass": 0, "other": 0, "vocals": 0.8,
    }  # fmt: skip


def test_settings_key_is_the_same_for_the_same_mix_only():
    gains = {"drums": 0.5, "bass": 1.0}
    assert settings_key(gains, "wav") == settings_key({"bass": 1.0, "drums": 0.50000001}, "wav")
    assert settings_key(gains, "wav") != settings_key(gains, "flac")
    assert settings_key(gains, "wav") != settings_key({"drums": 0.5, "bass": 0.9}, "wav")


def known_stems(job) -> dict[str, np.ndarray]:
    """Write each stem by hand as 32-bit float WAV: a distinct sine per stem, `[2, samples]`."""
    t = np.arange(RATE) / RATE
    stems = {}
    for position, name in enumerate(NAMES):
        left = 0.2 * np.sin(2 * np.pi * (110 * (position + 1)) * t)
        right = 0.1 * np.cos(2 * np.pi * (170 * (position + 1)) * t)
        samples = np.stack([left, right]).astype(np.float32)
        path = job.input_file.storage.path(f"hand-{name}.wav")
        soundfile.write(path, samples.T, RATE, subtype="FLOAT")
        stem = Stem(job=job, name=name, position=position)
        with open(path, "rb") as handle:
            stem.file.save(f"{name}.wav", File(handle), save=False)
        stem.size = stem.file.size
        stem.save()
        job.input_file.storage.delete(f"hand-{name}.wav")
        stems[name] = samples
    return stems


def post_export(client, job, output_format="wav", **fields):
    data = {"output_format": output_format, **fields}
    return client.post(reverse("export_create", args=[job.pk]), data)


def export_in(response) -> MixExport:
    match = re.search(r'id="export-([0-9a-f-]+)"', response.content.decode())
    assert match, response.content.decode()
    return MixExport.objects.get(pk=match.group(1))


def queued_runs() -> int:
    return django_rq.get_queue(settings.STEMSITE_SHORT_QUEUE).count


def test_mix_of_known_stems_with_known_gains_is_correct_sample_by_sample(
    owner_client, owner, make_job, run_worker
):
    job = make_job(owner, stems=(), name="Song.wav")
    stems = known_stems(job)
    # Mute: drums 0.5, bass 1, other muted, vocals 1.5. Solo: bass and vocals only, at their levels.
    muted = export_in(
        post_export(
            owner_client, job, "wav", gain_drums="0.5", gain_other="1", mute_other="on", gain_vocals="1.5"
        )
    )
    soloed = export_in(
        post_export(
            owner_client, job, "flac", gain_drums="0.5", gain_bass="0.25", solo_bass="on",
            gain_vocals="2", solo_vocals="on", mute_vocals="on",
        )
    )  # fmt: skip
    assert muted.settings["gains"] == {"drums": 0.5, "bass": 1.0, "other": 0.0, "vocals": 1.5}
    assert soloed.settings["gains"] == {"drums": 0.0, "bass": 0.25, "other": 0.0, "vocals": 2.0}

    assert run_worker().returncode == 0

    for export in (muted, soloed):
        export.refresh_from_db()
        assert export.status == "succeeded", export.error_message
        assert export.file.name == f"jobs/{job.pk}/exports/{export.pk}.{export.output_format}"
        rendered, rate = soundfile.read(export.file.path, dtype="float32", always_2d=True)
        expected = sum(gain * stems[name] for name, gain in export.settings["gains"].items())
        assert rate == RATE
        assert soundfile.info(export.file.path).subtype == "PCM_24"
        assert rendered.T.shape == expected.shape
        assert np.abs(rendered.T - expected).max() < 1e-5
        assert export.size == export.file.size

        response = owner_client.get(reverse("export_file", args=[job.pk, export.pk]))
        name = f"Song - {'no other' if export == muted else 'bass and vocals only'}.{export.output_format}"
        assert response["Content-Disposition"] == f'attachment; filename="{name}"'
        assert b"".join(response.streaming_content) == export.file.read()


def test_same_settings_give_the_same_export_without_a_second_run(owner_client, owner, make_job, run_worker):
    job = make_job(owner)
    first = export_in(post_export(owner_client, job, "mp3", gain_vocals="0.5"))
    again = export_in(post_export(owner_client, job, "mp3", gain_vocals="0.5", gain_drums="1"))
    assert again.pk == first.pk
    assert queued_runs() == 1
    assert run_worker().returncode == 0

    response = post_export(owner_client, job, "mp3", gain_vocals="0.5")
    assert export_in(response).pk == first.pk
    assert 'data-status="succeeded"' in response.content.decode()
    assert reverse("export_file", args=[job.pk, first.pk]) in response.content.decode()
    assert queued_runs() == 0
    assert MixExport.objects.count() == 1

    other = export_in(post_export(owner_client, job, "mp3", gain_vocals="0.6"))
    assert other.pk != first.pk
    assert queued_runs() == 1


def test_failed_export_runs_again_when_asked_again(owner_client, owner, make_job):
    job = make_job(owner)
    export = export_in(post_export(owner_client, job, "wav"))
    export.refresh_from_db()
    assert export.mark_failed("It broke.")
    django_rq.get_queue(settings.STEMSITE_SHORT_QUEUE).empty()

    response = post_export(owner_client, job, "wav")

    assert export_in(response).pk == export.pk
    export.refresh_from_db()
    assert (export.status, export.error_message) == ("queued", "")
    assert queued_runs() == 1


@pytest.mark.parametrize(
    ("fields", "sentence"),
    [
        ({"output_format": "ogg"}, "Choose a format for the mix: MP3, WAV or FLAC."),
        ({}, "Choose a format for the mix: MP3, WAV or FLAC."),
        ({"output_format": "wav", "gain_vocals": "3"}, "The level of vocals must be a number from 0 to 2."),
        ({"output_format": "wav", "gain_vocals": "-1"}, "The level of vocals must be a number from 0 to 2."),
        ({"output_format": "wav", "gain_drums": "loud"}, "The level of drums must be a number from 0 to 2."),
        ({"output_format": "wav", "gain_drums": "nan"}, "The level of drums must be a number from 0 to 2."),
    ],
)
def test_bad_settings_are_refused_with_a_sentence_and_nothing_queued(
    owner_client, owner, make_job, fields, sentence
):
    job = make_job(owner)
    response = owner_client.post(reverse("export_create", args=[job.pk]), fields, HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert sentence in response.content.decode()
    assert 'class="mix-export"' in response.content.decode()
    assert MixExport.objects.count() == 0
    assert queued_runs() == 0


def test_unfinished_job_cannot_be_mixed(owner_client, owner, make_job):
    job = make_job(owner, status="running")
    response = post_export(owner_client, job, "wav")
    assert response.status_code == 400
    assert "Only a finished separation can be mixed" in response.content.decode()
    assert MixExport.objects.count() == 0


def test_other_users_exports_are_404(outsider_client, owner_client, owner, make_job, make_export):
    job = make_job(owner, name="Secret Song.wav")
    export = make_export(job)
    unfinished = make_export(job, gains={"vocals": 0.5}, status="running")
    for response in (
        post_export(outsider_client, job, "wav"),
        outsider_client.get(reverse("export_file", args=[job.pk, export.pk])),
    ):
        assert response.status_code == 404
        assert b"Secret Song" not in response.content
    assert MixExport.objects.count() == 2
    assert owner_client.get(reverse("export_file", args=[job.pk, unfinished.pk])).status_code == 404
    other_job = make_job(owner)
    assert owner_client.get(reverse("export_file", args=[other_job.pk, export.pk])).status_code == 404


def test_deleting_a_job_removes_its_exports_and_previews(
    owner_client, owner, make_job, make_export, media_root
):
    job = make_job(owner)
    make_export(job)
    stem = job.stems.first()
    with stem.file.open("rb") as handle:
        stem.preview.save("vocals.mp3", File(handle))
    storage = job.input_file.storage
    storage.save(f"jobs/{job.pk}/exports/cut-off.wav", File(open(stem.file.path, "rb")))  # noqa: SIM115

    owner_client.post(reverse("job_delete", args=[job.pk]))

    assert media_files(media_root) == []
    assert MixExport.objects.count() == 0


def test_unreadable_stem_fails_the_export_with_a_sentence_and_no_file(
    owner_client, owner, make_job, run_worker, media_root
):
    job = make_job(owner)
    stem = job.stems.get(name="vocals")
    with open(stem.file.path, "wb") as handle:
        handle.write(b"not audio at all" * 1000)
    export = export_in(post_export(owner_client, job, "flac"))

    assert run_worker().returncode == 0

    export.refresh_from_db()
    assert export.status == "failed"
    assert export.error_message == MSG_STEM_UNREADABLE
    assert not export.file
    assert not [path for path in media_files(media_root) if "/exports/" in str(path)]
    page = post_export(owner_client, job, "flac").content.decode()
    assert 'data-status="queued"' in page, "asking again renders it again"


def job_socket(job, client) -> WebsocketCommunicator:
    """The job page's websocket, opened with the client's session from the site's own origin."""
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    return WebsocketCommunicator(
        application, f"/ws/jobs/{job.pk}/", headers=[(b"origin", b"http://localhost"), (b"cookie", cookie)]
    )


def test_export_progress_and_result_reach_the_job_socket(owner_client, owner, make_job, run_worker):
    job = make_job(owner)
    export = export_in(post_export(owner_client, job, "mp3", gain_bass="0"))

    async def watch():
        socket = job_socket(job, owner_client)
        connected, _ = await socket.connect()
        assert connected
        await socket.receive_from(timeout=10)  # the job's own block, sent on connect
        result = await asyncio.to_thread(run_worker, {"STEMSITE_PROGRESS_INTERVAL": "0"})
        assert result.returncode == 0, result.stderr
        seen = []
        while not seen or seen[-1] != "succeeded":
            html = await socket.receive_from(timeout=10)
            assert f'id="export-{export.pk}"' in html
            seen.append(re.search(r'data-status="(\w+)"', html).group(1))
        await socket.disconnect()
        return seen, html

    seen, html = async_to_sync(watch)()
    assert seen[0] == "running"
    assert seen[-1] == "succeeded"
    assert reverse("export_file", args=[job.pk, export.pk]) in html
    assert "ws-connect" not in html


def test_socket_sends_an_export_change_that_was_never_pushed(
    owner_client, owner, make_job, make_export, settings
):
    """The job is finished but its mix is not: the socket keeps re-reading until the mix is done."""
    settings.STEMSITE_SOCKET_RESYNC_SECONDS = 0.2
    job = make_job(owner)
    export = make_export(job, status="running")

    async def watch():
        socket = job_socket(job, owner_client)
        connected, _ = await socket.connect()
        assert connected
        await socket.receive_from(timeout=10)  # the current state, sent on connect
        await database_sync_to_async(
            lambda: type(export).objects.filter(pk=export.pk).update(status="succeeded")
        )()  # its push went nowhere
        html = await socket.receive_from(timeout=10)
        await socket.disconnect()
        return html

    html = async_to_sync(watch)()
    assert re.search(rf'id="export-{export.pk}"[^>]*data-status="succeeded"', html)
