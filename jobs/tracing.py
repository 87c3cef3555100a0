"""Tracing with OpenTelemetry: one trace per job, from the upload's request to its stored stems.

Configured only by OpenTelemetry's own environment variables (read in settings.py): with
OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set, each process calls
`setup(role)` once (daphne in stemsite/asgi.py, every RQ worker, run_workers' reconciler) and
exports its spans over OTLP/HTTP; the SDK reads the rest itself (OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_BSP_*, OTEL_EXPORTER_OTLP_HEADERS, ...).
Unset, `setup` imports no SDK and builds no provider or exporter, and every helper here returns
at its first line: requests and jobs do no tracing work at all.

The maintained instrumentations trace Django's requests, websocket connections (ASGI), Redis,
psycopg and botocore. Redis, psycopg and botocore record only inside a trace, so a worker's
heartbeats and the reconciler's polling make no traces of their own. What they cannot see is
here: the trace context travels in each RQ job's meta (`rq_meta`), and the worker continues it
(`rq_attempt`); a later attempt of a job links to the trace that submitted it.
"""

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from datetime import datetime

from django.conf import settings

logger = logging.getLogger(__name__)

# Keys in an RQ job's meta: the W3C trace context of the enqueue, and the submitting trace's
# traceparent when this attempt belongs to a later trace (a retry, a reconciler re-queue).
TRACE_META = "trace"
LINK_META = "trace_link"
TRACER_NAME = "stemsite"
QUEUE_UNREACHABLE = "The queue could not be reached."  # an enqueue span's failure
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

_enabled = False
_no_span = contextlib.nullcontext()


def enabled() -> bool:
    return _enabled


def setup(role: str) -> bool:
    """Start exporting this process's spans, once; False (and nothing done) while tracing is off.

    `role` names the process (web, worker, reconciler): the service is `stemsite-<role>` unless
    OTEL_SERVICE_NAME names it. A forked RQ work horse needs no call: the SDK restarts its batch
    thread after a fork, and the exporter opens its own connections there (_ForkSafeExporter).
    """
    global _enabled
    if _enabled or not settings.STEMSITE_TRACING:
        return _enabled
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"stemsite.process": role}
    if not settings.OTEL_SERVICE_NAME:
        attributes["service.name"] = f"stemsite-{role}"
    provider = TracerProvider(resource=Resource.create(attributes))  # the sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(_ForkSafeExporter()))
    trace.set_tracer_provider(provider)
    _instrument(provider, web=role == "web")
    _enabled = True
    logger.info("Tracing on: %s exports spans over OTLP/HTTP", role)
    return True


def _instrument(provider, web: bool) -> None:
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    inside_traces = _ChildSpansOnly(provider)
    RedisInstrumentor().instrument(tracer_provider=inside_traces)
    PsycopgInstrumentor().instrument(tracer_provider=inside_traces)
    BotocoreInstrumentor().instrument(tracer_provider=inside_traces)
    if web:
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        DjangoInstrumentor().instrument(excluded_urls=settings.STEMSITE_TRACING_EXCLUDED_URLS)


def websocket_app(app):
    """The websocket application, traced from connect to close when tracing is on (one span per
    open page, without a span per message: 500 pages on one job would make 500 per push)."""
    if not _enabled:
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    def details(scope: dict) -> tuple[str, dict]:
        return f"WEBSOCKET {_UUID.sub('{job_id}', scope.get('path', ''))}", {}

    return OpenTelemetryMiddleware(app, exclude_spans=["receive", "send"], default_span_details=details)


def span(name: str, attributes: dict | None = None, kind: str = "internal", link: str = ""):
    """A span around a block, child of the current one; `link` (a traceparent) adds a link to
    another trace. A no-op context while tracing is off; `as` gives the span or None."""
    if not _enabled:
        return _no_span
    from opentelemetry import trace

    return trace.get_tracer(TRACER_NAME).start_as_current_span(
        name, kind=_kind(kind), attributes=attributes, links=_links(link)
    )


def failed(message: str, span=None) -> None:
    """Mark a span (the current one unless given) as failed with the sentence the user sees."""
    if not _enabled:
        return
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    (span or trace.get_current_span()).set_status(Status(StatusCode.ERROR, message))


def current_traceparent() -> str:
    """The W3C traceparent of the current span, or "" (tracing off, or no trace here)."""
    if not _enabled:
        return ""
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def current_ids() -> tuple[str, str]:
    """(trace id, span id) in hex of the current span, for log lines; ("", "") without one."""
    if not _enabled:
        return "", ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def rq_meta(link: str = "") -> dict:
    """What an RQ job's meta carries so the worker's spans continue this trace.

    `link` is the traceparent of the trace that submitted the job; it is kept when this enqueue
    belongs to another trace (a retry's request, a reconciler's re-queue), so the new attempt
    links back to the upload.
    """
    if not _enabled:
        return {}
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    meta = {TRACE_META: carrier}
    if link and _trace_id(link) != _trace_id(carrier.get("traceparent", "")):
        meta[LINK_META] = link
    return meta


@contextlib.contextmanager
def rq_attempt(rq_job, name: str, attributes: dict) -> Iterator[object]:
    """In a worker's parent, around one RQ job: the `queue wait` span from its enqueue until now,
    then the attempt's span until the block ends, both continuing the enqueuer's trace.

    The attempt's span lives in the parent, which outlives a work horse killed mid-run, so the
    attempt always ends in the trace; the horse's spans are its children (`within`). Yields the
    span, or None while tracing is off.
    """
    if not _enabled:
        yield None
        return
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind

    tracer = trace.get_tracer(TRACER_NAME)
    parent = propagate.extract(rq_job.meta.get(TRACE_META) or {})
    enqueued_at = rq_job.enqueued_at
    if isinstance(enqueued_at, datetime):
        wait = tracer.start_span(
            "queue wait", context=parent, start_time=_nanoseconds(enqueued_at), attributes=attributes
        )
        wait.end()
    attempt = tracer.start_span(
        name,
        context=parent,
        kind=SpanKind.CONSUMER,
        links=_links(rq_job.meta.get(LINK_META, "")),
        attributes={
            **attributes,
            "messaging.system": "rq",
            "messaging.destination.name": rq_job.origin,
            "messaging.message.id": rq_job.id,
        },
    )
    try:
        yield attempt
    finally:
        attempt.end()


def within(span_or_none):
    """Make a span started elsewhere (rq_attempt) current for a block, without ending it."""
    if span_or_none is None:
        return _no_span
    from opentelemetry import trace

    return trace.use_span(span_or_none, end_on_exit=False)


def flush() -> None:
    """Export what this process holds: a work horse calls it before it exits with os._exit."""
    if not _enabled:
        return
    from opentelemetry import trace

    trace.get_tracer_provider().force_flush(timeout_millis=5000)


def _kind(kind: str):
    from opentelemetry.trace import SpanKind

    return {"internal": SpanKind.INTERNAL, "producer": SpanKind.PRODUCER, "client": SpanKind.CLIENT}[kind]


def _links(traceparent: str) -> list:
    """A link to the span a traceparent names, when it is in another trace than the current one."""
    if not traceparent:
        return []
    from opentelemetry import propagate, trace

    context = trace.get_current_span(propagate.extract({"traceparent": traceparent})).get_span_context()
    if not context.is_valid or context.trace_id == trace.get_current_span().get_span_context().trace_id:
        return []
    return [trace.Link(context, {"stemsite.link": "submitted by"})]


def _trace_id(traceparent: str) -> str:
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 else ""


def _nanoseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


def _exporter():
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout and compression from OTEL_EXPORTER_OTLP_*


class _ForkSafeExporter:
    """The OTLP/HTTP exporter, made anew in each process: a forked work horse must never write on
    the keep-alive connection it inherited from its worker, which the worker goes on using."""

    def __init__(self):
        self._pid = 0
        self._exporter = None

    def _current(self):
        if self._pid != os.getpid():
            self._exporter, self._pid = _exporter(), os.getpid()
        return self._exporter

    def export(self, spans):
        return self._current().export(spans)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        if self._exporter is not None and self._pid == os.getpid():
            self._exporter.shutdown()


class _ChildSpansOnly:
    """A tracer provider for instrumentations that should record only inside a trace.

    A worker heartbeats, polls and cleans its registries through Redis all day, and the reconciler
    queries the database every few seconds: as root spans those would bury the jobs' traces.
    """

    def __init__(self, provider):
        self._provider = provider

    def get_tracer(self, *args, **kwargs):
        return _ChildSpanTracer(self._provider.get_tracer(*args, **kwargs))


class _ChildSpanTracer:
    def __init__(self, tracer):
        self._tracer = tracer

    def start_span(self, name, context=None, *args, **kwargs):
        from opentelemetry import trace

        if not trace.get_current_span(context).get_span_context().is_valid:
            return trace.INVALID_SPAN
        return self._tracer.start_span(name, context, *args, **kwargs)

    @contextlib.contextmanager
    def start_as_current_span(self, name, context=None, *args, **kwargs):
        from opentelemetry import trace

        if not trace.get_current_span(context).get_span_context().is_valid:
            yield trace.INVALID_SPAN
            return
        with self._tracer.start_as_current_span(name, context, *args, **kwargs) as span:
            yield span
