"""Downloads: stems streamed with flat memory, and "Download all" as one zip, for the owner only."""

import hashlib
import io
import os
import tracemalloc
import zipfile

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.urls import reverse

from jobs.downloads import CHUNK

pytestmark = pytest.mark.django_db


def zip_of(response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_zip_holds_every_stem_and_nothing_else_named_like_the_single_downloads(owner_client, owner, make_job):
    job = make_job(owner, name="My Song.flac")
    make_job(owner, name="Other Song.wav", stems=("piano",))  # another job's stems stay out

    response = owner_client.get(reverse("stems_zip", args=[job.pk]))

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="My Song - stems.zip"'
    archive = zip_of(response)
    assert archive.testzip() is None
    stems = {stem.download_name: stem for stem in job.stems.all()}
    assert sorted(archive.namelist()) == sorted(stems) == [
        "My Song - bass.mp3", "My Song - drums.mp3", "My Song - other.mp3", "My Song - vocals.mp3",
    ]  # fmt: skip
    for name, stem in stems.items():
        info = archive.getinfo(name)
        assert info.compress_type == zipfile.ZIP_STORED
        assert archive.read(name) == stem.file.read()


def test_zip_is_404_for_other_users_missing_and_unfinished_jobs(
    outsider_client, owner_client, owner, make_job
):
    job = make_job(owner, name="Secret Song.wav")
    response = outsider_client.get(reverse("stems_zip", args=[job.pk]))
    assert response.status_code == 404
    assert b"Secret Song" not in response.content
    running = make_job(owner, status="running")
    assert owner_client.get(reverse("stems_zip", args=[running.pk])).status_code == 404


def test_zip_streams_in_chunks_and_memory_stays_flat_for_large_stems(owner_client, owner, make_job):
    job = make_job(owner)
    stem_bytes = 8 * 1024 * 1024
    for stem in job.stems.all():
        with open(stem.file.path, "wb") as handle:
            handle.write(os.urandom(stem_bytes))
    response = owner_client.get(reverse("stems_zip", args=[job.pk]))

    tracemalloc.start()
    try:
        sizes = [len(chunk) for chunk in response.streaming_content]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    total = sum(sizes)
    assert total > 4 * stem_bytes
    assert len(sizes) >= 4 * stem_bytes // CHUNK
    assert max(sizes) <= CHUNK + 4096, "a chunk is one read of a stem plus a zip header"
    assert peak < 2 * 1024 * 1024, f"{peak} bytes held while streaming {total} bytes"


@pytest.mark.parametrize("byte_range", [None, "bytes=1000-"])
def test_a_stem_streams_under_asgi_with_flat_memory(owner, make_job, byte_range):
    """daphne serves the site: Django's ASGI handler collects a plain file iterator whole first."""
    job = make_job(owner)
    stem = job.stems.first()
    data = os.urandom(16 * 1024 * 1024)
    with open(stem.file.path, "wb") as handle:
        handle.write(data)
    headers = {"Range": byte_range} if byte_range else {}

    async def download() -> tuple[int, bytes, int]:
        client = AsyncClient()
        await client.aforce_login(owner)
        response = await client.get(reverse("stem_file", args=[job.pk, stem.name]), headers=headers)
        tracemalloc.start()
        try:
            body = hashlib.sha256()
            async for chunk in response:  # as django.core.handlers.asgi sends a streaming response
                body.update(chunk)
            return response.status_code, body.digest(), tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    status, digest, peak = async_to_sync(download)()

    assert status == (206 if byte_range else 200)
    assert digest == hashlib.sha256(data[1000:] if byte_range else data).digest()
    assert peak < 2 * 1024 * 1024, f"{peak} bytes held while streaming a 16 MB stem"
