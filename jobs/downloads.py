"""Serving stored files to their owner, with HTTP Range support so players can seek.

From local disk this process streams the bytes; from an S3 bucket it answers with a redirect to
a short-lived presigned URL, and the bucket serves the bytes (and ranges) itself.
"""

import io
import re
import time
import zipfile
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import closing
from pathlib import PurePosixPath

from asgiref.sync import sync_to_async
from django.core.files.storage import Storage
from django.core.handlers.asgi import ASGIRequest
from django.db.models.fields.files import FieldFile
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.utils.http import content_disposition_header
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 64 * 1024
AUDIO_CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac"}


def stored_file_response(
    request: HttpRequest, stored: FieldFile, filename: str, as_attachment: bool = True
) -> HttpResponse:
    """A stored stem, preview or mix, typed by its extension: how pages and the API serve them all."""
    extension = PurePosixPath(stored.name).suffix.lstrip(".")
    content_type = AUDIO_CONTENT_TYPES.get(extension, "application/octet-stream")
    if isinstance(stored.storage, S3Storage):
        return presigned_redirect(stored.storage, stored.name, filename, content_type, as_attachment)
    return file_response(request, stored.storage, stored.name, filename, content_type, as_attachment)


def file_response(
    request: HttpRequest, storage: Storage, name: str, filename: str, content_type: str, as_attachment: bool
) -> HttpResponse:
    """The whole file, or the single byte range asked for (206), streamed from storage a chunk at a
    time (under daphne too: see streaming_response)."""
    size = storage.size(name)
    disposition = content_disposition_header(as_attachment, filename)
    match = _RANGE.match(request.headers.get("Range", "").strip())
    start, end, status = 0, size - 1, 200
    if match and any(match.groups()):
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        else:
            start, end = max(0, size - int(last)), size - 1
        if start > end or start >= size:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        status = 206
    response = streaming_response(
        request, _read_range(storage, name, start, end), status=status, content_type=content_type
    )
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = disposition
    return response


def presigned_redirect(
    storage: S3Storage, name: str, filename: str, content_type: str, as_attachment: bool
) -> HttpResponse:
    """A redirect to a URL that reads this one object for the bucket's URL life; the bucket answers
    with this name and type, and honours Range. Never cached: a cached redirect would outlive the URL."""
    disposition = content_disposition_header(as_attachment, filename)
    url = storage.url(
        name, parameters={"ResponseContentDisposition": disposition, "ResponseContentType": content_type}
    )
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = "private, no-store"
    return response


def _read_range(storage: Storage, name: str, start: int, end: int):
    with storage.open(name, "rb") as handle:
        handle.seek(start)
        remaining = end - start + 1
        while remaining > 0:
            data = handle.read(min(CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data


class _Sink(io.RawIOBase):
    """A write-only stream that hands back what was written since the last `take`."""

    def __init__(self):
        super().__init__()
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.buffer += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def streaming_response(request: HttpRequest, chunks: Iterator[bytes], **kwargs) -> StreamingHttpResponse:
    """A response that sends `chunks` as they come, under daphne too: Django's ASGI handler would
    first collect a plain iterator whole, so there each chunk is made in a worker thread instead."""
    if isinstance(request, ASGIRequest):
        return StreamingHttpResponse(_in_threads(chunks), **kwargs)
    return StreamingHttpResponse(chunks, **kwargs)


async def _in_threads(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    iterator = iter(chunks)
    following = sync_to_async(next, thread_sensitive=False)
    try:
        while (chunk := await following(iterator, None)) is not None:
            yield chunk
    finally:  # a client that hangs up mid-download: close the stored files now, not at collection
        if close := getattr(iterator, "close", None):
            await sync_to_async(close, thread_sensitive=False)()


def zip_stream(entries: Iterable[tuple[str, Storage, str]]) -> Iterator[bytes]:
    """A zip of stored files `(name in the zip, storage, stored name)`, produced CHUNK by CHUNK.

    Entries are stored, not compressed (audio barely compresses), and written to a stream that
    cannot seek, so sizes and checksums follow each entry: memory holds one chunk, whatever the
    size of the files.
    """
    return (chunk for chunk in _zip_chunks(entries) if chunk)


def _zip_chunks(entries: Iterable[tuple[str, Storage, str]]) -> Iterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for arcname, storage, name in entries:
            info = zipfile.ZipInfo(arcname, date_time=time.localtime()[:6])
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = storage.size(name)  # lets zipfile choose zip64 for a file over 2 GB
            with _read_stream(storage, name) as source, archive.open(info, "w") as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


def _read_stream(storage: Storage, name: str):
    """The stored file, read once from start to end: from a bucket, the GET's own body (opening an
    S3 file would first copy the whole object)."""
    if isinstance(storage, S3Storage):
        key = storage._normalize_name(clean_name(name))
        return closing(storage.bucket.Object(key).get()["Body"])
    return storage.open(name, "rb")
