"""Webhooks: a job's callback URL gets one signed POST when the job finishes, retried with backoff.

Callback URLs are checked against server-side request forgery when they are accepted and again
before every attempt, and each attempt connects to the address it has just checked (DNS may change
in between): only http(s) to public addresses (jobs/addresses.py), unless
STEMSITE_WEBHOOK_ALLOW_PRIVATE or STEMSITE_WEBHOOK_ALLOWED_HOSTS say otherwise. Redirects are never
followed. Each attempt is a WebhookDelivery row; a failed attempt queues the next one after the
next STEMSITE_WEBHOOK_RETRY_DELAYS interval (RQ's scheduler runs it).
"""

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import socket
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import django_rq
from django.conf import settings
from django.db import IntegrityError
from redis.exceptions import RedisError

from jobs import addresses, tracing
from jobs.models import Job, WebhookDelivery, WebhookSecret

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Stemsite-Signature"
DELIVERY_TIMEOUT = 10  # seconds for one POST, connection included


def check_callback_url(url: str) -> None:
    """Raise ValueError with a sentence unless `url` is http(s) to a host resolving to public addresses
    (the rule of jobs/addresses.py), or to a host the operator trusts."""
    try:
        target = addresses.parse_url(url)
        if _trusted(target.host):
            addresses.resolve(target.host, target.port)
        else:
            addresses.public_addresses(target.host, target.port)
    except addresses.AddressRefused as refused:
        sentence = _CALLBACK_SENTENCES[refused.reason]
        raise ValueError(sentence.format(host=refused.host, address=refused.address)) from None


_CALLBACK_SENTENCES = {
    addresses.INVALID: "The callback URL is not a valid URL.",
    addresses.SCHEME: "The callback URL must start with http:// or https://.",
    addresses.NO_HOST: "The callback URL has no host name.",
    addresses.CREDENTIALS: "The callback URL must not contain a user name or password.",
    addresses.UNRESOLVABLE: "The callback URL's host {host} cannot be resolved.",
    addresses.PRIVATE: (
        "The callback URL's host {host} resolves to a private, loopback or reserved address "
        "({address}); callbacks go only to public addresses."
    ),
}


def _trusted(host: str) -> bool:
    """Hosts the operator lets callbacks reach whatever they resolve to (a trusted network)."""
    return settings.STEMSITE_WEBHOOK_ALLOW_PRIVATE or host.lower() in settings.STEMSITE_WEBHOOK_ALLOWED_HOSTS


def secret_for(user) -> WebhookSecret:
    """The user's signing secret, made on first need."""
    try:
        return WebhookSecret.objects.get(user=user)
    except WebhookSecret.DoesNotExist:
        pass
    try:
        return WebhookSecret.objects.create(user=user, secret=secrets.token_hex(32))
    except IntegrityError:  # made meanwhile by another process
        return WebhookSecret.objects.get(user=user)


def rotate_secret(user) -> WebhookSecret:
    """Replace the user's secret: events signed from now on use the new one."""
    secret = secret_for(user)
    secret.secret = secrets.token_hex(32)
    secret.save(update_fields=["secret"])
    return secret


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>`, keyed with the user's secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def event_payload(job: Job, event: str) -> dict:
    """What a receiver learns about a finished job: its state and absolute stem download URLs."""
    base = settings.STEMSITE_BASE_URL.rstrip("/")
    return {
        "event": event,
        "created_at": job.finished_at.isoformat() if job.finished_at else None,
        "job": {
            "id": str(job.pk),
            "status": job.status,
            "state": job.status,
            "original_name": job.original_name,
            "model": job.model_name,
            "error_message": job.error_message,
            "created_at": job.created_at.isoformat(),
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            "stems": [
                {"name": stem.name, "size": stem.size, "url": base + stem.get_absolute_url()}
                for stem in job.stems.all()
            ],
        },
    }


def event_rq_id(job: Job) -> str:
    """The first delivery of an attempt's terminal event has one RQ id, so the reconciler can tell an
    event RQ still holds from one it never got or lost (Redis down or restarted)."""
    return f"webhook-{job.pk}-{job.attempt}-{job.status}"


def queue_job_event(job: Job) -> bool:
    """Queue the delivery of the job's terminal event if it has a callback URL; called once per finish.

    The body is fixed now, so every retry sends the same event. False when there is nothing to
    send or Redis is unreachable: the reconciler then queues it again (jobs.background.reconcile).
    """
    if not job.callback_url or not job.is_finished or job.duplicate_of_id:
        return False  # an import that became another job: that job's event is the one sent
    event = f"job.{job.status}"
    body = json.dumps(event_payload(job, event), separators=(",", ":"))
    with tracing.span("enqueue webhook", {"stemsite.job.id": str(job.pk), "stemsite.webhook.event": event},
                      kind="producer", link=job.trace_parent):  # fmt: skip
        try:
            django_rq.get_queue(settings.STEMSITE_SHORT_QUEUE).enqueue(
                deliver_event, str(job.pk), event, body, str(uuid.uuid4()), 1,
                job_id=event_rq_id(job), **_delivery_options(job.pk),
            )  # fmt: skip
        except (RedisError, OSError) as error:
            logger.warning("Could not queue the %s webhook of job %s: %s", event, job.pk, error)
            tracing.failed(tracing.QUEUE_UNREACHABLE)
            return False
    return True


def _delivery_options(job_id) -> dict:
    """Deliveries travel on the short queue, beside mix exports, never behind separations; their
    meta names the job and carries the trace (jobs/tracing.py)."""
    return {
        "job_timeout": DELIVERY_TIMEOUT + 20,
        "result_ttl": 3600,
        "failure_ttl": 24 * 3600,
        "meta": {"job": str(job_id), **tracing.rq_meta()},
    }


def deliver_event(job_id: str, event: str, body: str, delivery_id: str, attempt: int) -> None:
    """One attempt: check the URL again, POST the signed body, record it, queue the next on failure."""
    with tracing.span("deliver webhook", {"stemsite.job.id": job_id, "stemsite.webhook.attempt": attempt}):
        _deliver_event(job_id, event, body, delivery_id, attempt)


def _deliver_event(job_id: str, event: str, body: str, delivery_id: str, attempt: int) -> None:
    job = Job.objects.select_related("owner").filter(pk=job_id).first()
    if job is None or not job.callback_url:
        logger.info("Webhook %s of job %s dropped: the job or its callback URL is gone", event, job_id)
        return
    delivery = WebhookDelivery(job=job, event=event, url=job.callback_url, attempt=attempt)
    try:
        check_callback_url(job.callback_url)
    except ValueError as error:
        delivery.error = str(error)
        delivery.save()
        logger.warning("Webhook %s of job %s refused: %s", event, job_id, error)
        tracing.failed(delivery.error)
        return
    started = time.monotonic()
    receiver = {"server.address": urlsplit(job.callback_url).hostname or ""}
    with tracing.span("POST callback", receiver, kind="client"):
        _post(delivery, body.encode(), secret_for(job.owner).secret, delivery_id)
        if not delivery.succeeded:
            tracing.failed(delivery.error)
    delivery.duration_ms = int((time.monotonic() - started) * 1000)
    delivery.save()
    if not delivery.succeeded:
        _schedule_retry(job_id, event, body, delivery_id, attempt)


def _post(delivery: WebhookDelivery, body: bytes, secret: str, delivery_id: str) -> None:
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        delivery.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "stemsite-webhooks",
            "X-Stemsite-Event": delivery.event,
            "X-Stemsite-Delivery": delivery_id,
            "X-Stemsite-Timestamp": timestamp,
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        },
    )
    try:
        with _OPENER.open(request, timeout=DELIVERY_TIMEOUT) as response:
            delivery.status_code = response.status
    except urllib.error.HTTPError as error:
        delivery.status_code = error.code
        error.close()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        delivery.error = f"The receiver could not be reached: {reason}"[:1000]
        return
    delivery.succeeded = 200 <= delivery.status_code < 300
    if not delivery.succeeded:
        delivery.error = f"The receiver answered HTTP {delivery.status_code}."


def _schedule_retry(job_id: str, event: str, body: str, delivery_id: str, attempt: int) -> None:
    delays = settings.STEMSITE_WEBHOOK_RETRY_DELAYS
    if attempt > len(delays):
        logger.warning("Webhook %s of job %s failed %s times; giving up", event, job_id, attempt)
        return
    try:
        django_rq.get_queue(settings.STEMSITE_SHORT_QUEUE).enqueue_in(
            timedelta(seconds=delays[attempt - 1]),
            deliver_event, job_id, event, body, delivery_id, attempt + 1, **_delivery_options(job_id),
        )  # fmt: skip
    except (RedisError, OSError) as error:
        logger.warning("Could not queue a retry of webhook %s of job %s: %s", event, job_id, error)


def redeliver(delivery: WebhookDelivery) -> bool:
    """Staff: send a recorded event again as a fresh attempt of its job's current state."""
    job = delivery.job
    if not job.callback_url:
        return False
    body = json.dumps(event_payload(job, delivery.event), separators=(",", ":"))
    try:
        django_rq.get_queue(settings.STEMSITE_SHORT_QUEUE).enqueue(
            deliver_event, str(job.pk), delivery.event, body, str(uuid.uuid4()), delivery.attempt + 1,
            **_delivery_options(job.pk),
        )  # fmt: skip
    except (RedisError, OSError) as error:
        logger.warning("Could not queue a redelivery for job %s: %s", job.pk, error)
        return False
    return True


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the receiver's answer, recorded as such: following it could reach any address."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _checked_socket(address: tuple[str, int], timeout, source_address=None) -> socket.socket:
    """The connection to a receiver, made to an address the rule checked just now (no DNS rebinding)."""
    host, port = address
    if _trusted(host):
        return socket.create_connection(address, timeout, source_address)
    return addresses.connect_checked(host, port, timeout if isinstance(timeout, int | float) else None)[0]


class _CheckedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _checked_socket


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _checked_socket


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_CheckedHTTPConnection, req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_CheckedHTTPSConnection, req, context=self._context)


# No environment proxies either: the checked address is the one connected to.
_OPENER = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), _NoRedirects, _CheckedHTTPHandler, _CheckedHTTPSHandler
)
