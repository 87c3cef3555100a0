"""Upload size and count limits, enforced while the request arrives rather than after; under
daphne, a large body also reaches Django from disk a few chunks at a time.

Three layers: daphne's request class refuses a body over the limit as it streams in; an ASGI
middleware in front of Django does the same for servers that hand bodies over as they arrive
(Content-Length first, then bytes counted, for chunked bodies); an upload handler refuses it in
Django itself (WSGI, or defence in depth). None leaves a temporary file behind: nothing is
written before the refusal, or Django's own clean-up of an interrupted upload removes it.
"""

import asyncio
import json
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

MB = 1024 * 1024
# How much of a request body daphne hands Django per message, and how many messages may wait.
BODY_CHUNK_BYTES = 64 * 1024
BODY_CHUNKS_AHEAD = 4
# Room for the form's other fields and the multipart headers around the files themselves.
FORM_OVERHEAD_BYTES = MB


def max_file_bytes() -> int:
    return settings.STEMSITE_MAX_UPLOAD_MB * MB


def max_body_bytes() -> int:
    """The largest request body: all files of one upload together, plus the form around them."""
    return max_file_bytes() + FORM_OVERHEAD_BYTES


def too_large_message() -> str:
    limit = settings.STEMSITE_MAX_UPLOAD_MB
    return (
        f"This upload is too large: the limit is {limit} MB for all files sent together. "
        "Send fewer or smaller files."
    )


def too_many_files_message() -> str:
    limit = settings.STEMSITE_MAX_FILES_PER_UPLOAD
    return f"Too many files in one upload: send at most {limit} at once."


def wants_json(path: str, accept: str) -> bool:
    """API calls (or any client asking for JSON) get the API's error shape instead of the HTML page."""
    return path.startswith("/api/") or ("application/json" in accept and "text/html" not in accept)


def refusal_body(path: str, accept: str) -> tuple[bytes, bytes]:
    """The 413 answer's body and content type, for the page or for the API."""
    if wants_json(path, accept):
        error = {"error": {"code": "too_large", "message": too_large_message(), "details": None}}
        return json.dumps(error).encode(), b"application/json"
    return render_to_string(
        "413.html", {"message": too_large_message()}
    ).encode(), b"text/html; charset=utf-8"


def refusal_message(exception: Exception | None) -> str:
    """What a 400 page says for an upload Django refused, or '' for any other bad request."""
    if isinstance(exception, UploadTooLarge):
        return too_large_message()
    if isinstance(exception, TooManyFilesSent):
        return too_many_files_message()
    return ""


class UploadTooLarge(RequestDataTooBig):
    """A request body or file part over the upload limit; answered with Django's 400 page."""


class UploadSizeLimitHandler(FileUploadHandler):
    """First in FILE_UPLOAD_HANDLERS: stops a request whose body or any file part is over the limit.

    The body is checked before any file is created. A file part that grows past the limit
    stops the upload (Django closes, and so deletes, the temporary files), and the request is
    then refused as a whole.
    """

    too_large = False

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length > max_body_bytes():
            raise UploadTooLarge(f"Request body of {content_length} bytes is over the upload limit.")

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > max_file_bytes():
            self.too_large = True
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size):
        return None

    def upload_complete(self):
        if self.too_large:
            raise UploadTooLarge("A file part is over the upload limit.")


class RequestBodyLimit:
    """ASGI middleware: answer 413 to an HTTP request whose body is over `max_bytes`.

    Under a server that streams bodies (uvicorn, hypercorn) nothing past the limit is read.
    daphne receives the whole body before it calls the application; there
    `limit_daphne_request_bodies` stops it earlier, and this is the second line.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            logger.warning("Refused a request body of %s bytes to %s", length, scope.get("path"))
            await _refuse(send, scope)
            return None
        received = 0
        refused = False

        async def counting_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    logger.warning("Refused a streamed request body over %s bytes", self.max_bytes)
                    await _refuse(send, scope)
                    return {"type": "http.disconnect"}  # Django stops reading and answers nothing
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        return await self.app(scope, counting_receive, guarded_send)


def _header(scope, wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return value
    return None


def _content_length(scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


async def _refuse(send, scope) -> None:
    accept = (_header(scope, b"accept") or b"").decode("latin-1")
    body, content_type = refusal_body(scope.get("path", ""), accept)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def limit_daphne_request_bodies(max_bytes: int) -> bool:
    """Make daphne refuse a body over `max_bytes` while it streams in, not after.

    daphne (through twisted) writes the whole body to a temporary file before the application
    is called, so no ASGI middleware can stop a 10 GB upload from filling the disk. Its request
    class is swapped, once, for one that answers 413 and closes the connection as soon as the
    Content-Length or the bytes received pass the limit, that leaves multipart parsing to
    Django, and that hands the body to the application at its pace (`PacedBody`). Returns
    False, and changes nothing, when daphne's internals are not the ones this was written for.
    """
    from daphne import http_protocol

    base = http_protocol.WebRequest
    if getattr(base, "max_body_bytes", None) is not None:
        base.max_body_bytes = max_bytes
        return True
    if not all(hasattr(base, name) for name in ("gotLength", "handleContentChunk", "process")):
        logger.warning("daphne's request class has changed; request bodies are limited only after arrival")
        return False

    class LimitedWebRequest(base):
        received = 0
        refused = False
        _application_queue = None

        @property
        def application_queue(self):
            return self._application_queue

        @application_queue.setter
        def application_queue(self, queue):
            # daphne sets this to the application's input queue, then puts the whole body in it.
            self._application_queue = PacedBody(queue, self.content) if PacedBody.fits(queue) else queue

        def __init__(self, *args, **kwargs):
            # twisted would also parse every multipart body into memory for request.args, which
            # daphne never reads: a 200 MB upload would cost daphne hundreds of MB of RAM.
            kwargs.setdefault("parsePOSTFormSubmission", False)
            super().__init__(*args, **kwargs)

        def gotLength(self, length):
            super().gotLength(length)
            if length is not None and length > self.max_body_bytes:
                self._refuse(f"a declared body of {length} bytes")

        def handleContentChunk(self, data):
            if self.refused:
                return
            self.received += len(data)
            if self.received > self.max_body_bytes:
                self._refuse(f"a body of more than {self.max_body_bytes} bytes")
                return
            super().handleContentChunk(data)

        def process(self):
            if not self.refused:
                return super().process()
            return None

        def _refuse(self, what: str) -> None:
            self.refused = True
            logger.warning("Refused %s from %s", what, self.channel.transport.getPeer())
            # The request line is parsed by the channel; the request object gets it only later.
            path = (getattr(self.channel, "_path", None) or b"").decode("latin-1").split("?")[0]
            accept = b", ".join(self.requestHeaders.getRawHeaders(b"accept") or []).decode("latin-1")
            body, content_type = refusal_body(path, accept)
            head = (
                f"HTTP/1.1 413 Content Too Large\r\nContent-Type: {content_type.decode()}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            self.channel.transport.write(head.encode() + body)
            self.channel.transport.loseConnection()

    LimitedWebRequest.max_body_bytes = max_bytes
    http_protocol.WebRequest = LimitedWebRequest
    return True


class PacedBody:
    """Stands in for daphne's input queue of one HTTP request, so the body never sits in memory.

    daphne reads the whole body from twisted's temporary file into the application's unbounded
    queue at once (8 KB messages): a 1 GB upload held 1 GB of RAM until Django had spooled it
    back to disk. Here those messages are dropped, and the body is read again from the file, a
    few chunks ahead of the application, as the application takes them. Other messages (the
    disconnect) pass straight through; a disconnect also stops the reading.
    """

    def __init__(self, queue: asyncio.Queue, content):
        self.queue = queue
        self.content = content
        self.feeding: asyncio.Task | None = None
        queue._maxsize = BODY_CHUNKS_AHEAD  # put() now waits for the application to take a chunk

    @staticmethod
    def fits(queue) -> bool:
        """Whether `queue` is the asyncio queue this was written for (else daphne's way stays)."""
        return isinstance(queue, asyncio.Queue) and isinstance(getattr(queue, "_maxsize", None), int)

    def __bool__(self) -> bool:
        return True

    def put_nowait(self, message: dict) -> None:
        if message["type"] == "http.request":
            if self.feeding is None:  # daphne's first body message: the file is complete
                self.feeding = asyncio.ensure_future(self._feed())
            return
        if self.feeding is not None:
            self.feeding.cancel()
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            asyncio.ensure_future(self.queue.put(message))

    async def _feed(self) -> None:
        self.content.seek(0)
        while True:
            try:
                chunk = self.content.read(BODY_CHUNK_BYTES)
            except ValueError:  # twisted closed the file: the connection is gone, daphne says so
                return
            except OSError:
                logger.exception("Could not read a request body back from daphne's temporary file")
                await self.queue.put({"type": "http.disconnect"})  # Django gives the request up
                return
            more = len(chunk) == BODY_CHUNK_BYTES
            await self.queue.put({"type": "http.request", "body": chunk, "more_body": more})
            if not more:
                return
