"""Settings of the OneReward platform, all read from the environment.

Every variable has a working default that needs no server: a SQLite file, files in a local
directory, a Celery broker kept in a local folder. PostgreSQL, Redis/RabbitMQ and S3-compatible
storage are switched on by variables (see README.md, "Configuration"), never by editing this file.
"""
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from .env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
# Where the defaults keep their state (SQLite file, local media, the local broker's folders).
DATA_DIR = Path(env_str("ONEREWARD_DATA_DIR", str(BASE_DIR / "var")))

# --- mode -----------------------------------------------------------------------------------
PRODUCTION = env_bool("ONEREWARD_PRODUCTION", False)
DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("ONEREWARD_PRODUCTION=1 cannot run with DJANGO_DEBUG=1")

_DEV_SECRET_KEY = "django-insecure-development-key-never-use-in-production"
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "" if PRODUCTION else _DEV_SECRET_KEY)
if PRODUCTION and (len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        "ONEREWARD_PRODUCTION=1 needs DJANGO_SECRET_KEY: at least 50 random characters, for example "
        "from `python -c 'import secrets; print(secrets.token_urlsafe(64))'`"
    )

ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# --- applications ---------------------------------------------------------------------------
INSTALLED_APPS = [
    "onereward.apps.PlatformAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "onereward.apps.OnerewardConfig",
    # One app per stage of the loop, in its order.
    "inputs",
    "generation",
    "annotation",
    "preferences",
    "evaluation",
    "rewardmodel",
    "rl",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads a request body: an API body over the limits is answered 413 in JSON.
    "onereward.api_errors.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a login refused by the lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

if PRODUCTION:
    # Static files straight from the app server (collected at image build); in development
    # runserver serves them.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "onereward.urls"
WSGI_APPLICATION = "onereward.wsgi.application"
ASGI_APPLICATION = "onereward.asgi.application"

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
                "onereward.roles.role_context",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
# DATABASE_URL, e.g. postgres://user:password@host:5432/name (psycopg 3). Default: a SQLite file.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'onereward.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server and worker write to the same file: wait on a lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATA_DIR.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- authentication -------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login lockout (django-axes), on every way in that checks a password: the login page, the admin's
# login page and POST /api/auth/token/. Its backend comes first: it refuses a locked client before
# any password is checked, so a right password during the lockout gets nothing either.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # ModelBackend, with a user's own and group permissions read in one query instead of two.
    "onereward.permission_backend.ModelBackendOneQuery",
]

# --- cache and sessions ---------------------------------------------------------------------
# ONEREWARD_CACHE_URL (redis://host:6379/1) gives every process one shared cache; sessions are then
# read from it (written through to the database), which saves the session query of every request.
# Without it each process has its own memory cache, and sessions stay in the database alone: a
# session cached in one process would outlive a logout handled by another.
ONEREWARD_CACHE_URL = env_str("ONEREWARD_CACHE_URL", "")
if ONEREWARD_CACHE_URL:
    if not ONEREWARD_CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"ONEREWARD_CACHE_URL={ONEREWARD_CACHE_URL!r}: give a redis:// URL")
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": ONEREWARD_CACHE_URL,
                          "KEY_PREFIX": "onereward"}}
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SESSION_ENGINE = "django.contrib.sessions.backends.db"
ONEREWARD_LOGIN_FAILURE_LIMIT = env_int("ONEREWARD_LOGIN_FAILURE_LIMIT", 5)
ONEREWARD_LOGIN_COOLOFF_MINUTES = env_int("ONEREWARD_LOGIN_COOLOFF_MINUTES", 15)
if ONEREWARD_LOGIN_FAILURE_LIMIT < 1:
    raise ImproperlyConfigured(f"ONEREWARD_LOGIN_FAILURE_LIMIT={ONEREWARD_LOGIN_FAILURE_LIMIT}: give 1 or more")
if ONEREWARD_LOGIN_COOLOFF_MINUTES < 0:
    raise ImproperlyConfigured(
        f"ONEREWARD_LOGIN_COOLOFF_MINUTES={ONEREWARD_LOGIN_COOLOFF_MINUTES}: give 0 (locked until an admin "
        "unlocks) or more minutes"
    )
# Proxies in front of the app that append the client's address to X-Forwarded-For; 0: the client is
# REMOTE_ADDR. Only count proxies you run: the header's other entries are whatever the client wrote.
ONEREWARD_TRUSTED_PROXY_COUNT = env_int("ONEREWARD_TRUSTED_PROXY_COUNT", 0)
AXES_FAILURE_LIMIT = ONEREWARD_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=ONEREWARD_LOGIN_COOLOFF_MINUTES) if ONEREWARD_LOGIN_COOLOFF_MINUTES else None
# A username is locked at one address only: by address alone, one person guessing (or a whole office
# behind one NAT) would lock out everyone there; by username alone, anyone could lock any user out
# from anywhere, admins included. Guessing from many addresses costs an attacker the limit per address.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "onereward.lockout.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "onereward.lockout.lockout_response"
AXES_VERBOSE = False  # no banner in the log of every process that starts Django

# --- internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- files ----------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "onereward" / "static"]
MEDIA_ROOT = Path(env_str("ONEREWARD_MEDIA_ROOT", str(DATA_DIR / "media")))
MEDIA_URL = "media/"

# S3-compatible storage is on when a bucket is named; every file then goes through it unchanged,
# because code only ever uses Django's storage API.
AWS_STORAGE_BUCKET_NAME = env_str("ONEREWARD_S3_BUCKET")
if AWS_STORAGE_BUCKET_NAME:
    AWS_S3_ENDPOINT_URL = env_str("ONEREWARD_S3_ENDPOINT_URL") or None
    AWS_S3_REGION_NAME = env_str("ONEREWARD_S3_REGION") or None
    AWS_ACCESS_KEY_ID = env_str("ONEREWARD_S3_ACCESS_KEY_ID") or None
    AWS_SECRET_ACCESS_KEY = env_str("ONEREWARD_S3_SECRET_ACCESS_KEY") or None
    AWS_LOCATION = env_str("ONEREWARD_S3_PREFIX")
    AWS_DEFAULT_ACL = None
    AWS_QUERYSTRING_AUTH = True
    AWS_S3_FILE_OVERWRITE = True
    _media_storage = {"BACKEND": "storages.backends.s3.S3Storage"}
else:
    _media_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _media_storage,
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Uploads larger than this (a zip of inputs) stream to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- inputs ---------------------------------------------------------------------------------
# Images above this many pixels are refused before they are decoded (decompression bombs).
ONEREWARD_MAX_IMAGE_PIXELS = env_int("ONEREWARD_MAX_IMAGE_PIXELS", 40_000_000)
# Images (sources) narrower or lower than this are refused; masks must match their image. 32 is the
# demo models' size (two FLUX latent patches a side); set 64 or more where only real photographs come in.
ONEREWARD_MIN_IMAGE_SIDE = env_int("ONEREWARD_MIN_IMAGE_SIDE", 32)
# Prompts longer than this are refused, however they come in (files, manifests, forms, API, defaults).
ONEREWARD_MAX_PROMPT_CHARS = env_int("ONEREWARD_MAX_PROMPT_CHARS", 2000)
# Zip bombs: caps on the bytes a zip of inputs actually unpacks to, whatever its headers declare. One
# entry: an uncompressed 8-bit RGBA image at the pixel limit (compressed formats are far smaller).
# The whole archive (ONEREWARD_MAX_ZIP_BYTES is its former name, still read). The ratio: unpacked
# bytes per compressed byte, for entries over 8 MiB; photographs are about 1, zeros about 1,000.
ONEREWARD_MAX_ZIP_ENTRY_BYTES = env_int("ONEREWARD_MAX_ZIP_ENTRY_BYTES", 4 * ONEREWARD_MAX_IMAGE_PIXELS)
ONEREWARD_MAX_ZIP_UNCOMPRESSED_BYTES = env_int(
    "ONEREWARD_MAX_ZIP_UNCOMPRESSED_BYTES", env_int("ONEREWARD_MAX_ZIP_BYTES", 4 * 1024**3)
)
ONEREWARD_MAX_ZIP_RATIO = env_int("ONEREWARD_MAX_ZIP_RATIO", 100)

# The key of the shown orders of candidates (annotation tasks and study items); by default derived
# from SECRET_KEY. Blind orders are then not computable from the user and item ids.
ONEREWARD_ORDER_SECRET = env_str("ONEREWARD_ORDER_SECRET", "")

# A worker generating a candidate set renews its claim every quarter of this lease; a claim not
# renewed for a whole lease belongs to a dead worker, and any worker, whatever its name, may take the
# set over (the sweep at every worker start, and again one lease later).
ONEREWARD_GENERATION_LEASE_SECONDS = env_int("ONEREWARD_GENERATION_LEASE_SECONDS", 120)
# The same for training runs: the worker following a trainer renews the run's heartbeat; a running
# run whose heartbeat is older than this lease is handed to the next worker, which resumes it from
# its last checkpoint, and a second delivery of a run whose heartbeat is fresh is dropped.
ONEREWARD_RUN_LEASE_SECONDS = env_int("ONEREWARD_RUN_LEASE_SECONDS", 120)
# Where GPU workers keep training runs (datasets copied from storage, checkpoints, the trained
# models): a local or shared disk of the GPU hosts, not the media storage (a 7B model is 15 GB).
ONEREWARD_TRAINING_DIR = Path(env_str("ONEREWARD_TRAINING_DIR", str(DATA_DIR / "training")))
# A policy checkpoint is flagged when the judge's win rate against the base exceeds the human
# study's by more than this (rl.reward_hacking).
ONEREWARD_REWARD_HACKING_GAP = env_float("ONEREWARD_REWARD_HACKING_GAP", 0.15)
# The small demo models seed_demo builds (a FLUX Fill and a Qwen2.5-VL judge with random weights).
ONEREWARD_DEMO_MODELS_DIR = Path(env_str("ONEREWARD_DEMO_MODELS_DIR", str(DATA_DIR / "demo-models")))

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["onereward.permissions.ModelPermissionsWithView"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# Errors under /api/ answer JSON (onereward/api_errors.py; handler400/403/404/500 in onereward/urls.py).
CSRF_FAILURE_VIEW = "onereward.api_errors.csrf_failure"
# The OpenAPI schema and its interactive docs: open to anyone in development, to logged-in users
# (session or token) in production unless ONEREWARD_PUBLIC_API_SCHEMA=1.
ONEREWARD_PUBLIC_API_SCHEMA = env_bool("ONEREWARD_PUBLIC_API_SCHEMA", not PRODUCTION)
SPECTACULAR_SETTINGS = {
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny" if ONEREWARD_PUBLIC_API_SCHEMA
                          else "rest_framework.permissions.IsAuthenticated"],
    "TITLE": "OneReward platform API",
    "DESCRIPTION": "Inputs, taxonomy and background jobs of the OneReward visual RLHF platform.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a "status"; name each set of choices after what it belongs to.
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "onereward.jobs.JobStatus",
        "CandidateSetStatusEnum": "generation.models.SetStatus",
    },
}

# --- Celery ---------------------------------------------------------------------------------
# Default: kombu's filesystem transport, which needs no server yet still hands every job to a
# separate worker process. CELERY_BROKER_URL=redis://... or amqp://... switches to a real broker.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = DATA_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "messages"),
        "data_folder_out": str(_broker_dir / "messages"),
        "control_folder": str(_broker_dir / "control"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or None  # job state lives in our own rows
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = (
    Queue("default", Exchange("default"), routing_key="default"),
    # Generation and training: served by workers that own a GPU.
    Queue("gpu", Exchange("gpu"), routing_key="gpu"),
)
CELERY_TASK_ROUTES = {
    # The collection schedules' tick is bookkeeping (it starts rounds, whose jobs go to the GPUs).
    "rl.collection_tick": {"queue": "default", "routing_key": "default"},
    "generation.*": {"queue": "gpu", "routing_key": "gpu"},
    "rewardmodel.*": {"queue": "gpu", "routing_key": "gpu"},
    "rl.*": {"queue": "gpu", "routing_key": "gpu"},
    "runs.*": {"queue": "gpu", "routing_key": "gpu"},
}
# `celery -A onereward beat` sends the tick every minute: it starts the collection rounds whose
# schedules are due (rl/rounds.py; a due time starts one round however many beats run).
CELERY_BEAT_SCHEDULE = {
    "collection-rounds": {"task": "rl.collection_tick", "schedule": 60.0, "options": {"queue": "default"}},
}
# A job that dies with its worker goes back to the queue; jobs are idempotent (unique keys).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis: a job delivered to a worker that died before acknowledging it (SIGKILL, a lost host) comes
# back to the queue after this many seconds. Claims and run heartbeats make a second delivery of a
# job still running harmless (it is dropped), so this can be short; RabbitMQ redelivers on its own
# when the connection drops and ignores it.
ONEREWARD_REDELIVERY_SECONDS = env_int("ONEREWARD_REDELIVERY_SECONDS", 600)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": ONEREWARD_REDELIVERY_SECONDS,
        "unacked_restore_interval": max(1, min(10, ONEREWARD_REDELIVERY_SECONDS // 4)),
        "unacked_restore_throttle": 1,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- production hardening -------------------------------------------------------------------
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"

# --- content security policy ----------------------------------------------------------------
# django-csp sends it on every response: scripts, styles, images and requests only from this site;
# no inline script or handler. The few inline <style> elements (and the API docs' script) carry
# the request's nonce ({{ request.csp_nonce }}); htmx is told not to add a style of its own
# (templates/htmx.html). Style attributes, which cannot run code, are let through: the admin's list
# thumbnails and bars are sized with them in Python; the site's own pages use none.
# tests/e2e/test_csp_browser.py checks the templates, visits the pages and listens for violations.
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE  # noqa: E402

MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
                  "csp.middleware.CSPMiddleware")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:"],  # data: for the icons the API docs and the admin inline
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
