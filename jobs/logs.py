"""What every log line carries (the job it is about, its trace) and how lines are written.

settings.LOGGING wires these in: STEMSITE_LOG_FORMAT=text (the default) writes lines for people,
`json` one JSON object per line for log collectors. A worker names the job around each run
(`job_context`); with tracing on, a line written inside a span carries its trace id, so a line
leads to its trace.
"""

import contextlib
import contextvars
import json
import logging
import logging.config
from collections.abc import Iterator
from datetime import UTC, datetime

from jobs import tracing

_job_id: contextvars.ContextVar[str] = contextvars.ContextVar("stemsite_job_id", default="")


def configure(config: dict) -> None:
    """settings.LOGGING_CONFIG: the dict config, and Python's warnings (a library's UserWarning)
    written as log lines too, so a JSON log stays one object per line."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Lines logged in this block (and in a work horse forked inside it) name this job."""
    token = _job_id.set(str(job_id or ""))
    try:
        yield
    finally:
        _job_id.reset(token)


class ContextFilter(logging.Filter):
    """Adds `job_id`, `trace_id` and `span_id` to every record ("" where there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = _job_id.get()
        record.trace_id, record.span_id = tracing.current_ids()
        return True


class RQHousekeepingFilter(logging.Filter):
    """RQ's maintenance lines (registries cleaned every maintenance interval by each worker,
    channel subscriptions, scheduler locks, result lifetimes) are DEBUG lines, shown only when
    LOG_LEVEL=DEBUG: rq sets its worker logger to INFO itself, so logger levels cannot do this."""

    HOUSEKEEPING = (
        "cleaning registries",
        "subscribing to channel",
        "unsubscribing from channel",
        "result is kept for",
        "Acquired scheduler lock",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not any(text in str(record.msg) for text in self.HOUSEKEEPING):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [job <id> trace <id>]`, the brackets only where known."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        known = (("job", getattr(record, "job_id", "")), ("trace", getattr(record, "trace_id", "")))
        context = [f"{name} {value}" for name, value in known if value]
        if not context:
            return line
        first, newline, rest = line.partition("\n")  # a traceback stays below the line it explains
        return f"{first} [{' '.join(context)}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job_id, trace_id, span_id, and
    the traceback as `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key in ("job_id", "trace_id", "span_id"):
            if getattr(record, key, ""):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)
