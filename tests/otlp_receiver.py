"""A real OTLP/HTTP trace receiver on this machine: what a collector (Jaeger, Tempo) would get.

It answers POST /v1/traces as a collector does and decodes each protobuf payload with
opentelemetry-proto, keeping every span as a `ReceivedSpan`. tests/test_tracing.py runs it beside
the site's processes; bench/trace_tree.py prints what it received as a tree.
"""

import gzip
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    service: str
    start_ns: int
    end_ns: int
    attributes: dict
    links: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None  # the status message of a failed span ("" when it has none)

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class OtlpReceiver:
    """Start with `with OtlpReceiver() as receiver:`; `receiver.endpoint` is OTEL_EXPORTER_OTLP_ENDPOINT."""

    def __init__(self, port: int = 0):
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                receiver._take(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "OtlpReceiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _take(self, request: ExportTraceServiceRequest) -> None:
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    error = span.status.message if span.status.code == 2 else None
                    spans.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=KINDS.get(span.kind, str(span.kind)),
                            service=resource.get("service.name", ""),
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                            error=error,
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans.extend(spans)

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [span for span in self.received() if span.trace_id == trace_id]


def span_tree(spans: list[ReceivedSpan]) -> str:
    """The spans of one trace as an indented tree, with service, offset from the trace's start and
    duration; spans whose parent never arrived (a killed process's) are listed as roots."""
    if not spans:
        return "(no spans)"
    ids = {span.span_id for span in spans}
    children: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        children.setdefault(span.parent_id if span.parent_id in ids else "", []).append(span)
    start = min(span.start_ns for span in spans)
    lines = []

    def walk(parent: str, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: (s.start_ns, s.end_ns)):
            offset = (span.start_ns - start) / 1e6
            notes = [f"[{span.service}]", f"+{offset:.0f} ms", f"{span.ms:.1f} ms"]
            if span.parent_id and span.parent_id not in ids:
                notes.append("(parent not received)")
            if span.links:
                notes.append(f"(linked to trace {span.links[0][0][:8]}…)")
            if span.error is not None:
                notes.append(f"ERROR {span.error}".rstrip())
            lines.append(f"{'  ' * depth}{span.name}  {' '.join(notes)}")
            walk(span.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)
