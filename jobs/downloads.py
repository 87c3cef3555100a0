"""Serving stored files to their owner, with HTTP Range support so players can seek."""

import io
import re
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath

from django.core.files.storage import Storage
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 64 * 1024
AUDIO_CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac"}


def stored_file_response(
    request: HttpRequest, stored: FieldFile, filename: str, as_attachment: bool = True
) -> HttpResponse:
    """A stored stem, preview or mix, typed by its extension: how pages and the API serve them all."""
    extension = PurePosixPath(stored.name).suffix.lstrip(".")
    content_type = AUDIO_CONTENT_TYPES.get(extension, "application/octet-stream")
    return file_response(request, stored.storage, stored.name, filename, content_type, as_attachment)


def file_response(
    request: HttpRequest, storage: Storage, name: str, filename: str, content_type: str, as_attachment: bool
) -> HttpResponse:
    """The whole file, or the single byte range asked for (206), streamed from storage."""
    size = storage.size(name)
    disposition = content_disposition_header(as_attachment, filename)
    match = _RANGE.match(request.headers.get("Range", "").strip())
    if not match or not any(match.groups()):
        response = FileResponse(storage.open(name, "rb"), content_type=content_type)
        response["Content-Length"] = str(size)
    else:
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        else:
            start, end = max(0, size - int(last)), size - 1
        if start > end or start >= size:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        response = StreamingHttpResponse(
            _read_range(storage, name, start, end), status=206, content_type=content_type
        )
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = disposition
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
            with storage.open(name, "rb") as source, archive.open(info, "w") as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()
