"""stemsite settings: every host-specific value comes from the environment, with safe defaults."""

import os
import tempfile
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from stemsite.channel_layer import channel_layers
from stemsite.database import database_config
from stemsite.env import env_bool, env_choice, env_float, env_float_list, env_int, env_list, env_str
from stemsite.security import bucket_origins, content_security_policy
from stemsite.storage import storages_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("STEMSITE_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment, or set DEBUG=true for a local run."
        )
    SECRET_KEY = "django-insecure-local-development-key-only-used-when-debug-is-on"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "django_rq",
    "template_partials",
    "axes",
    "ninja",  # serves the API docs' Swagger UI from static files, not a CDN
    "csp",
    "jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outermost after security: sees every answer under /api/, including Django's own error pages.
    "jobs.api.middleware.ApiJsonErrors",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A Content-Security-Policy on every answer (stemsite/security.py says what it allows and why).
    "stemsite.security.ContentSecurityPolicy",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into the 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "stemsite.urls"
WSGI_APPLICATION = "stemsite.wsgi.application"
ASGI_APPLICATION = "stemsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "jobs.context_processors.queue_status",
            ],
        },
    },
]

DATABASES = {
    "default": database_config(env_str("DATABASE_URL"), str(VAR_DIR / "db.sqlite3")),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "job_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the app and project folders, so no collectstatic step can be forgotten.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
# Media is never served as a public folder: every file goes through an owner-checked view.
MEDIA_URL = "/media-not-served/"
# Files live under MEDIA_ROOT unless an S3 bucket is named (stemsite/storage.py): then uploads,
# stems and mixes go to that private bucket and downloads are presigned URLs living this long.
STEMSITE_S3_BUCKET = env_str("STEMSITE_S3_BUCKET")
STORAGES = storages_config(
    bucket=STEMSITE_S3_BUCKET,
    endpoint_url=env_str("STEMSITE_S3_ENDPOINT_URL"),
    region=env_str("STEMSITE_S3_REGION"),
    addressing_style=env_str("STEMSITE_S3_ADDRESSING_STYLE"),
    url_seconds=env_int("STEMSITE_S3_URL_SECONDS", 300, minimum=1),
)

# Uploads always land in a temporary file, so ffprobe can read them and memory stays flat; the
# first handler stops a request over the upload limits while it is parsed.
FILE_UPLOAD_HANDLERS = [
    "jobs.upload_limits.UploadSizeLimitHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_TEMP_DIR = env_str("FILE_UPLOAD_TEMP_DIR") or None

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

# Redis pub/sub: each web process subscribes once per group and fans a push out to its sockets
# itself. channels-redis' list-based layer takes a shared lock and makes two tasks per socket per
# message, which made 500 sockets on one job take seconds per push (bench/push.py). Pushes are
# best effort either way (jobs/realtime/events.py); sockets re-read the database. A separate Redis for
# websocket pushes is possible.
CHANNEL_REDIS_URL = env_str("CHANNEL_REDIS_URL", REDIS_URL)
CHANNEL_LAYERS = channel_layers(CHANNEL_REDIS_URL)

# Three queues, each served by its own workers, so a mix export or a webhook delivery (seconds)
# never waits behind separations (minutes), and a download from a slow site holds up neither:
# `manage.py run_workers --queues ...`.
STEMSITE_QUEUE = "separations"
STEMSITE_SHORT_QUEUE = "short"
STEMSITE_IMPORT_QUEUE = "imports"
# Enqueue at the call: stemsite itself calls enqueue from transaction.on_commit.
RQ = {"WORKER_CLASS": "jobs.background.worker.SeparationWorker", "COMMIT_MODE": "auto"}
RQ_QUEUES = {
    STEMSITE_QUEUE: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600},
    STEMSITE_SHORT_QUEUE: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 900},
    STEMSITE_IMPORT_QUEUE: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 900},
}

# Separation
STEMSITE_MODEL = env_str("STEMSITE_MODEL", "htdemucs")
STEMSITE_MODEL_REPO = env_str("STEMSITE_MODEL_REPO")
STEMSITE_DEVICE = env_str("STEMSITE_DEVICE", "auto")
STEMSITE_MODEL_CACHE_SIZE = env_int("STEMSITE_MODEL_CACHE_SIZE", 2, minimum=1)
# The engine (jobs/engine/execution.py): auto runs HTDemucs and HDemucs networks on OpenVINO's CPU runtime
# for half precision, and for full precision when it timed faster than PyTorch on this machine;
# PyTorch runs everything else, and every model on a GPU. Converted networks and OpenVINO's
# compiled blobs are kept in the cache folder (about 340 MB per network at full size).
STEMSITE_ENGINE = env_choice("STEMSITE_ENGINE", "auto", ("auto", "openvino", "torch"))
STEMSITE_ENGINE_CACHE_DIR = Path(env_str("STEMSITE_ENGINE_CACHE_DIR", str(VAR_DIR / "engine")))
# The precision new uploads get unless people choose: full (fp32, the demucs command line's stems)
# or half (about twice as fast where the workers' hardware runs it natively; see docs).
STEMSITE_PRECISION = env_choice("STEMSITE_PRECISION", "full", ("full", "half"))
STEMSITE_MAX_FILES_PER_UPLOAD = env_int("STEMSITE_MAX_FILES_PER_UPLOAD", 20, minimum=1)
# Tracks per page of the job list.
STEMSITE_JOBS_PER_PAGE = env_int("STEMSITE_JOBS_PER_PAGE", 25, minimum=1)
# Seconds of separation per second of audio for htdemucs at normal quality, used for ETAs
# until the site has measured its own recent jobs.
STEMSITE_EXPECTED_SECONDS_PER_AUDIO_SECOND = env_float("STEMSITE_EXPECTED_SECONDS_PER_AUDIO_SECOND", 0.7)
STEMSITE_TORCH_THREADS = env_int("STEMSITE_TORCH_THREADS", 0, minimum=0)
STEMSITE_MAX_UPLOAD_MB = env_int("STEMSITE_MAX_UPLOAD_MB", 200, minimum=1)
STEMSITE_MAX_DURATION_SECONDS = env_int("STEMSITE_MAX_DURATION_SECONDS", 20 * 60, minimum=1)
# A job may run this many seconds per second of audio (plus a fixed allowance) before RQ
# stops it. The full htdemucs model needs about 0.7 s per second of audio on a 2-core CPU.
STEMSITE_TIMEOUT_PER_AUDIO_SECOND = env_float("STEMSITE_TIMEOUT_PER_AUDIO_SECOND", 6.0)
STEMSITE_TIMEOUT_BASE_SECONDS = env_int("STEMSITE_TIMEOUT_BASE_SECONDS", 600, minimum=1)
# Finished jobs older than this many days are deleted by `manage.py purge_expired_jobs` (0: never).
STEMSITE_RETENTION_DAYS = env_int("STEMSITE_RETENTION_DAYS", 30, minimum=0)
STEMSITE_PROGRESS_INTERVAL = env_float("STEMSITE_PROGRESS_INTERVAL", 0.25)

# Reliability: worker supervision, the reconciler, recovery of lost jobs.
# The reconciler compares running and queued rows with RQ every RECONCILE_INTERVAL seconds;
# a queued row gets GRACE seconds for its on-commit enqueue before it counts as missing from RQ.
STEMSITE_RECONCILE_INTERVAL = env_float("STEMSITE_RECONCILE_INTERVAL", 10.0)
STEMSITE_RECONCILE_GRACE_SECONDS = env_float("STEMSITE_RECONCILE_GRACE_SECONDS", 5.0)
# A run whose worker vanished is queued again this many times, then failed.
STEMSITE_MAX_RECOVERIES = env_int("STEMSITE_MAX_RECOVERIES", 1, minimum=0)
# A busy worker's parent heartbeats every JOB_MONITORING_INTERVAL seconds; one silent for
# WORKER_LOST_AFTER seconds is gone (its host crashed). RQ's own clean-up of abandoned jobs runs
# every MAINTENANCE_INTERVAL seconds; WORKER_TTL bounds an idle worker's blocking wait.
STEMSITE_JOB_MONITORING_INTERVAL = env_int("STEMSITE_JOB_MONITORING_INTERVAL", 5, minimum=1)
STEMSITE_WORKER_LOST_AFTER = env_float("STEMSITE_WORKER_LOST_AFTER", 30.0)
STEMSITE_WORKER_MAINTENANCE_INTERVAL = env_int("STEMSITE_WORKER_MAINTENANCE_INTERVAL", 30, minimum=1)
STEMSITE_WORKER_TTL = env_int("STEMSITE_WORKER_TTL", 60, minimum=20)
# The page banner asks Redis at most once per this many seconds per web process.
STEMSITE_QUEUE_CHECK_SECONDS = env_float("STEMSITE_QUEUE_CHECK_SECONDS", 5.0)

# Every open job socket re-reads its job this often and sends what changed, so a page catches
# up even when pushes were dropped (0 turns it off).
STEMSITE_SOCKET_RESYNC_SECONDS = env_float("STEMSITE_SOCKET_RESYNC_SECONDS", 10.0)

# Uploads and input limits. STEMSITE_MAX_UPLOAD_MB bounds one request (all its files together)
# in the ASGI middleware (stemsite/asgi.py) and the upload handler (jobs/upload_limits.py);
# Django's parser refuses more file parts than one upload may hold, with the 400 page.
DATA_UPLOAD_MAX_NUMBER_FILES = STEMSITE_MAX_FILES_PER_UPLOAD

# Accounts, access and per-user limits.
# Login throttling (django-axes): failures are counted per account and, separately, per client
# address; either counter reaching the limit refuses logins with a 429 until the cool-off ends.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("STEMSITE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("STEMSITE_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# Failures expire with the cool-off, not on a success: resetting on success would let anyone with
# an account wipe their address's failures (and those rows' counts against other accounts).
AXES_RESET_ON_SUCCESS = False
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "429.html"
AXES_CLIENT_IP_CALLABLE = "jobs.client_address.client_address"
# Reverse proxies in front of the site that append to X-Forwarded-For. 0: the site is reached
# directly and REMOTE_ADDR is the client; with N, the Nth address from the right is the client.
STEMSITE_TRUSTED_PROXIES = env_int("STEMSITE_TRUSTED_PROXIES", 0, minimum=0)

# Per-user limits, checked when a track is uploaded; 0 turns a limit off.
STEMSITE_UPLOADS_PER_HOUR = env_int("STEMSITE_UPLOADS_PER_HOUR", 30, minimum=0)
STEMSITE_MAX_ACTIVE_JOBS = env_int("STEMSITE_MAX_ACTIVE_JOBS", 10, minimum=0)
STEMSITE_STORAGE_QUOTA_MB = env_int("STEMSITE_STORAGE_QUOTA_MB", 5120, minimum=0)

# Staff: a queued job older than this shows under admin's "stuck" filter.
STEMSITE_STUCK_QUEUED_MINUTES = env_int("STEMSITE_STUCK_QUEUED_MINUTES", 60, minimum=1)

# Webhooks: a job's callback URL gets a signed POST when it finishes (jobs/webhooks.py).
# Callback URLs must resolve to public addresses unless private ones are allowed (a trusted
# network), or the host is listed. Failed deliveries are retried after these many seconds.
STEMSITE_WEBHOOK_ALLOW_PRIVATE = env_bool("STEMSITE_WEBHOOK_ALLOW_PRIVATE", False)
STEMSITE_WEBHOOK_ALLOWED_HOSTS = [h.lower() for h in env_list("STEMSITE_WEBHOOK_ALLOWED_HOSTS", [])]
STEMSITE_WEBHOOK_RETRY_DELAYS = env_float_list("STEMSITE_WEBHOOK_RETRY_DELAYS", [10, 60, 300, 1800])
# The site's address as its users reach it: webhook events carry absolute download URLs.
STEMSITE_BASE_URL = env_str("STEMSITE_BASE_URL", "http://127.0.0.1:8000")

# Imports from a link (jobs/imports/, docs/import-and-sharing.md): off, direct (links to audio
# files) or sites (also pages of the sites yt-dlp understands). A download stops at the upload
# size limit and after this many seconds; it is written to a folder of its own under the import
# folder, removed whatever happens.
STEMSITE_URL_IMPORT = env_choice("STEMSITE_URL_IMPORT", "direct", ("off", "direct", "sites"))
STEMSITE_IMPORT_TIMEOUT_SECONDS = env_int("STEMSITE_IMPORT_TIMEOUT_SECONDS", 600, minimum=1)
STEMSITE_IMPORT_DIR = Path(
    env_str("STEMSITE_IMPORT_DIR") or Path(FILE_UPLOAD_TEMP_DIR or tempfile.gettempdir()) / "stemsite-imports"
)
# Tests only: `address:port` pairs of local servers that imports may reach although the address
# rule refuses private addresses. Leave it empty on a real site.
STEMSITE_TEST_FETCH_ALLOWED = frozenset(env_list("STEMSITE_TEST_FETCH_ALLOWED", []))

# Share links (jobs/sharing/): a client address that opens this many unknown, revoked or expired
# links within SHARE_GUESS_WINDOW_SECONDS gets 429 on every share link until the window ends.
STEMSITE_SHARE_GUESSES_PER_ADDRESS = env_int("STEMSITE_SHARE_GUESSES_PER_ADDRESS", 20, minimum=1)
STEMSITE_SHARE_GUESS_WINDOW_SECONDS = env_int("STEMSITE_SHARE_GUESS_WINDOW_SECONDS", 600, minimum=1)

# Metrics: /metrics for staff sessions or this bearer token (empty: staff only). Worker processes
# write their samples to files in this folder (prometheus_client's multi-process mode); the
# library reads the environment variable, so it is set here, before anything imports it.
STEMSITE_METRICS_TOKEN = env_str("STEMSITE_METRICS_TOKEN")
PROMETHEUS_MULTIPROC_DIR = Path(env_str("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics")))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)

# Email, for password resets: printed to the console unless an SMTP server is configured.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = 30
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "stemsite <noreply@localhost>")
# A reset link works for three hours (Django's default is three days).
PASSWORD_RESET_TIMEOUT = 3 * 3600

# Security: HTTPS-only cookies, redirects and HSTS whenever DEBUG is off. A local, plain-HTTP
# run (make run) sets STEMSITE_HTTPS=false; behind a TLS proxy it must send X-Forwarded-Proto.
HTTPS = env_bool("STEMSITE_HTTPS", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Preloading a domain into browsers is hard to undo, so it is each deployment's explicit choice.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# The Content-Security-Policy (stemsite/security.py): scripts, styles, media and connections from
# the site itself (and the bucket, when files live in one), no inline script, no eval.
CONTENT_SECURITY_POLICY = content_security_policy(bucket_origins(STORAGES["default"]))

# Tracing (jobs/tracing.py), by OpenTelemetry's own variables: every process exports its spans over
# OTLP/HTTP when an endpoint is set, and does no tracing work at all when none is. The SDK reads
# the others itself (OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*,
# OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, ...).
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME")
STEMSITE_TRACING = (
    bool(env_str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env_str("OTEL_EXPORTER_OTLP_ENDPOINT"))
    and not env_bool("OTEL_SDK_DISABLED", False)
    and env_choice("OTEL_TRACES_EXPORTER", "otlp", ("otlp", "none")) == "otlp"
)
# Collectors take OTLP over HTTP on port 4318 (Jaeger, Grafana Tempo, the OpenTelemetry Collector).
env_choice(
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    env_choice("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", ("http/protobuf",)),
    ("http/protobuf",),
)
# Requests not traced (regular expressions searched in the URL), unless the variable says otherwise.
STEMSITE_TRACING_EXCLUDED_URLS = env_str("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", "/static/,/metrics")

# Logs: a line per event, `text` for people or `json` (one object per line) for collectors. Both
# carry the job a line is about and, with tracing on, the trace it belongs to (jobs/logs.py). RQ's
# own maintenance (cleaning registries every maintenance interval, channel subscriptions) logs at
# DEBUG, so the console shows what happens to jobs.
STEMSITE_LOG_FORMAT = env_choice("STEMSITE_LOG_FORMAT", "text", ("text", "json"))
LOGGING_CONFIG = "jobs.logs.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "jobs.logs.ContextFilter"},
        "rq_housekeeping": {"()": "jobs.logs.RQHousekeepingFilter"},
    },
    "formatters": {
        "text": {"()": "jobs.logs.TextFormatter"},
        "json": {"()": "jobs.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": STEMSITE_LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "rq.worker": {"level": "INFO", "filters": ["rq_housekeeping"]},
        "rq.scheduler": {"filters": ["rq_housekeeping"]},
        # axes announces itself at INFO in every process; its warnings (lock-outs) still show.
        "axes": {"level": "WARNING"},
    },
}
