"""Tandem's one settings module, driven by environment variables (see README, "Configuration").

The embedded default needs no server: SQLite under TANDEM_HOME, a Celery broker in folders there
and a file cache. `DATABASE_URL` and `REDIS_URL` switch to PostgreSQL and Redis. With DEBUG off
(the default) a SECRET_KEY is required and the security settings are those
`manage.py check --deploy` asks for.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from modelcore.sampling_modes import SAMPLING_MODES, resolve_mode
from tandem import env

BASE_DIR = Path(__file__).resolve().parent.parent
# Where the embedded default keeps its state (SQLite, broker folders, cache).
TANDEM_HOME = env.get_path("TANDEM_HOME", BASE_DIR / "var")
# Model checkpoints, training runs and exports: one root, a shared filesystem in a cluster.
ARTIFACTS_ROOT = env.get_path("ARTIFACTS_ROOT", TANDEM_HOME / "artifacts")

DEBUG = env.get_bool("DEBUG", False)
SECRET_KEY = env.os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: set it to a long random string (DEBUG=1 uses a development key)"
        )
    SECRET_KEY = "django-insecure-development-key-never-use-in-production"
ALLOWED_HOSTS = env.get_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.get_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Login throttling on both login pages (below, "Logins").
    "axes",
    "rest_framework",
    # The research API's OpenAPI schema, and Swagger UI served from the package's own static
    # files (no CDN).
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "rlhf",
    "annotation",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response (tandem/security.py): no inline script.
    "tandem.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Checks every request's query string and body before anything else reads them (size,
    # hostile JSON, NUL).
    "tandem.request_input.RequestInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes asks: it turns a refused login attempt into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "tandem.urls"
WSGI_APPLICATION = "tandem.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.parse_database_url(
        env.os.environ.get("DATABASE_URL", "").strip() or f"sqlite:///{TANDEM_HOME / 'db.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Reuse connections between requests; health checks drop ones the server has closed.
    DATABASES["default"]["CONN_MAX_AGE"] = env.get_int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Parameters travel apart from the SQL, so psycopg prepares a statement it has run five
    # times on a connection and PostgreSQL plans it once, not on every request.
    DATABASES["default"]["OPTIONS"].setdefault("server_side_binding", True)
    # The test suite names its own throwaway database, so concurrent runs never collide.
    if test_name := env.os.environ.get("DATABASE_TEST_NAME", "").strip():
        DATABASES["default"]["TEST"] = {"NAME": test_name}
else:
    # SQLite: wait for a writer rather than fail with "database is locked", and write ahead so
    # readers (the pages) never block on the worker's writes.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file too: an in-memory database shares its cache between connections and
    # fails concurrent writers with "table is locked" where a real file makes them wait.
    DATABASES["default"]["TEST"] = {"NAME": str(TANDEM_HOME / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.os.environ.get("REDIS_URL", "").strip()
if REDIS_URL:
    env.check_redis_url(REDIS_URL)
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(TANDEM_HOME / "cache"),
        }
    }

# Django's database sessions, loaded with one hand-written query (tandem/sessions.py).
SESSION_ENGINE = "tandem.sessions"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Logins: django-axes counts failed logins on the annotators' and admin's login pages. After
# LOGIN_FAILURE_LIMIT failures for an account (from anywhere) or from a client address (for any
# account) that account or client is refused, with a page saying so, for LOGIN_COOLOFF_SECONDS;
# a successful login clears the count. Before that, each failure waits LOGIN_FAILURE_DELAY_MS
# per earlier failure (frontend/login_throttle.py). The address is REMOTE_ADDR (axes's default): headers a
# client can forge are not trusted.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.get_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env.get_int("LOGIN_COOLOFF_SECONDS", 15 * 60, minimum=1))
LOGIN_FAILURE_DELAY_MS = env.get_int("LOGIN_FAILURE_DELAY_MS", 500)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_CALLABLE = "frontend.login_throttle.recorded_username"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "frontend:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.get_path("STATIC_ROOT", TANDEM_HOME / "static")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Both APIs: the JSON that tandem.request_input parsed and checked, and one error format.
    "DEFAULT_PARSER_CLASSES": ["tandem.request_input.JSONParser"],
    "EXCEPTION_HANDLER": "tandem.api_errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # The research API's expensive requests (rlhf/api.py), per user: starting an iteration
    # (GPU hours) and exports (a model archive, a batch's labels streamed from the database).
    "DEFAULT_THROTTLE_RATES": {"iteration-start": "30/hour", "export": "120/hour"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tandem research API",
    "DESCRIPTION": "Start and follow iterations of the RLHF loop, publish or roll back model "
    "versions, export labels and models. Researchers and admins only: an API token "
    "(`Authorization: Bearer <token>`) or a logged-in session.",
    "VERSION": "1",
    "PREPROCESSING_HOOKS": ["rlhf.api.research_endpoints_only"],
    # Several models have a `status`; each choice set gets its own name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "IterationStatusEnum": "rlhf.models.Iteration.Status",
        "IterationStepStatusEnum": "rlhf.models.IterationStep.Status",
        "ModelVersionStatusEnum": "rlhf.models.ModelVersion.Status",
        "BatchStatusEnum": "annotation.models.Batch.Status",
    },
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [
        "rlhf.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "SERVE_PERMISSIONS": ["rlhf.authentication.IsResearcher"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: queues `default`, `generate` (sampling for annotators) and `train` (GPU jobs). Without
# REDIS_URL the broker is a pair of folders, so the embedded default runs with no server.
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
if REDIS_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Redis hands an unacknowledged message to another worker after this long. Only
        # `generate` acknowledges late (training acknowledges on receipt and resumes from its
        # row), so this is a few times the longest generation, not the longest job.
        "visibility_timeout": env.get_int("BROKER_VISIBILITY_TIMEOUT", 900, minimum=60),
        # A Redis that hangs must not hang a request's enqueue (tandem.leases.send_safely).
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
    }
else:
    _broker_folder = TANDEM_HOME / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_folder),
        "data_folder_out": str(_broker_folder),
        "control_folder": str(TANDEM_HOME / "broker-control"),
        # A worker lists the folder this often (kombu's default: every second, which an
        # annotator waited for before the first token); a listing costs microseconds.
        "polling_interval": 0.1,
    }
    for _folder in (_broker_folder, TANDEM_HOME / "broker-control"):
        _folder.mkdir(parents=True, exist_ok=True)
# An enqueue whose broker is away gives up within a second (the row stays pending and the
# reconciler sends it); a worker whose broker is away reconnects for as long as it takes.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_ALWAYS_EAGER = env.get_bool("CELERY_TASK_ALWAYS_EAGER", False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.os.environ.get("LOG_LEVEL", "INFO")},
}

# Annotation: how long an item stays locked to the annotator who fetched it, and the longest
# prompt an annotator may write (characters).
ANNOTATION_LOCK_SECONDS = env.get_int("ANNOTATION_LOCK_SECONDS", 15 * 60, minimum=1)
ANNOTATION_MAX_PROMPT_CHARS = env.get_int("ANNOTATION_MAX_PROMPT_CHARS", 4000, minimum=1)
# Gold (attention) items: an annotator whose share of gold items answered as expected is below
# this floor has their labels flagged in the admin and the batch statistics (annotation.stats).
ANNOTATION_GOLD_FLOOR = env.get_float("ANNOTATION_GOLD_FLOOR", 0.8, minimum=0.0, maximum=1.0)
# The device rlhf.serving loads model versions on (the generate worker samples there). "auto": the
# GPU where the process has one (looked for when a model first loads, never at start-up), else
# the CPU.
SERVING_DEVICE = env.get_choice("SERVING_DEVICE", "auto", ("auto", "cpu", "cuda"))
# How models sample there (modelcore.sampling_modes): "auto" is the fastest mode that keeps the
# model's answers, int8 weights (each block's decoding step one C++ call) on a CPU and the
# CUDA-graph step on a GPU; "reference" samples with the weights as loaded. A mode for the other
# device stops start-up.
SERVING_SAMPLING_MODE = env.get_choice("SERVING_SAMPLING_MODE", "auto", SAMPLING_MODES)
# Two versions of a comparison that share no weights (a policy retrained in every block beside
# its parent, two unrelated models) sample in parallel, the second in a process of its own beside
# the worker's (modelcore.sampling_process), which takes half the worker's threads: "auto" does so
# on a CPU with two cores or more, where a pair then takes about 1.6x one response instead of 2x;
# "off" steps the two in turn in the worker's process (as on a GPU).
SERVING_SECOND_PROCESS = env.get_choice("SERVING_SECOND_PROCESS", "auto", ("auto", "on", "off"))
if "auto" not in (SERVING_DEVICE, SERVING_SAMPLING_MODE):
    try:
        resolve_mode(SERVING_SAMPLING_MODE, SERVING_DEVICE)
    except ValueError as error:
        raise ImproperlyConfigured(
            f"SERVING_SAMPLING_MODE={SERVING_SAMPLING_MODE!r} with SERVING_DEVICE="
            f"{SERVING_DEVICE!r}: {error}"
        ) from None

# HTTPS (default: on unless DEBUG) says the site is served over TLS: redirect plain HTTP, keep
# cookies off plain HTTP, ask browsers for HSTS. Turn it off only for plain-HTTP local serving.
HTTPS = env.get_bool("HTTPS", not DEBUG)
if HTTPS:
    SECURE_SSL_REDIRECT = True
    # Health checks come from inside the network (compose, a load balancer), on plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.get_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 30)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Joining browsers' preload list binds the whole domain to HTTPS for good: the operator's
    # decision (SECURE_HSTS_PRELOAD=1), so the deployment check's reminder is silenced until then.
    SECURE_HSTS_PRELOAD = env.get_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    # Behind a TLS-terminating proxy, which says so in this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# The loop. Training runs on TRAIN_DEVICE (the train worker's own configuration: "cuda" on a GPU
# machine; the parent process of a worker never touches CUDA). On "cpu" an iteration's defaults
# pick the cheap modes (rlhf/hyperparameters.py).
TRAIN_DEVICE = env.get_choice("TRAIN_DEVICE", "cpu", ("cpu", "cuda"))
# Processes per training stage: the GPUs of a train worker's machine (data parallel, launched as
# torchrun would), or CPU processes sharing its cores over gloo.
TRAIN_PROCESSES = env.get_int("TRAIN_PROCESSES", 1, minimum=1)
# A worker renews its lease on an iteration every ITERATION_HEARTBEAT_SECONDS; a lease not
# renewed for ITERATION_STALE_SECONDS belongs to a dead worker and is taken over.
ITERATION_HEARTBEAT_SECONDS = env.get_int("ITERATION_HEARTBEAT_SECONDS", 10, minimum=1)
ITERATION_STALE_SECONDS = env.get_int("ITERATION_STALE_SECONDS", 120, minimum=2)
# A worker that died with an iteration this many times leaves it failed.
ITERATION_MAX_ATTEMPTS = env.get_int("ITERATION_MAX_ATTEMPTS", 5, minimum=1)
# Generation (annotation.generation), leased as iterations are: renewed every
# GENERATION_HEARTBEAT_SECONDS, free after GENERATION_STALE_SECONDS without a heartbeat, failed
# once its workers died GENERATION_MAX_ATTEMPTS times. A database error retries the task with
# backoff (1, 2, 4 ... 60 s) up to GENERATION_MAX_RETRIES times.
GENERATION_HEARTBEAT_SECONDS = env.get_int("GENERATION_HEARTBEAT_SECONDS", 5, minimum=1)
GENERATION_STALE_SECONDS = env.get_int("GENERATION_STALE_SECONDS", 30, minimum=2)
GENERATION_MAX_ATTEMPTS = env.get_int("GENERATION_MAX_ATTEMPTS", 3, minimum=1)
GENERATION_MAX_RETRIES = env.get_int("GENERATION_MAX_RETRIES", 10, minimum=0)
for _heartbeat, _stale in (
    ("ITERATION_HEARTBEAT_SECONDS", "ITERATION_STALE_SECONDS"),
    ("GENERATION_HEARTBEAT_SECONDS", "GENERATION_STALE_SECONDS"),
):
    if globals()[_stale] <= 2 * globals()[_heartbeat]:
        raise ImproperlyConfigured(f"{_stale} must be more than twice {_heartbeat}")
# How often beat runs the reconciler (tandem.leases): work lost with the broker or a dead
# worker is sent again within about this long of its stale time.
RECONCILE_SECONDS = env.get_int(
    "RECONCILE_SECONDS", min(GENERATION_STALE_SECONDS, ITERATION_STALE_SECONDS) // 2, minimum=1
)
# What beat starts when it closes the week's batch (a cron line: minute hour day month weekday).
LOOP_ROLLOVER_CRON = env.get_cron("LOOP_ROLLOVER_CRON", "0 0 * * 1")
LOOP_ALGORITHM = env.get_choice(
    "LOOP_ALGORITHM",
    "rejection_sampling",
    ("rejection_sampling", "ppo", "dpo", "rejection_sampling+ppo"),
)
LOOP_HYPERPARAMETERS = env.get_json_object("LOOP_HYPERPARAMETERS", {})
CELERY_BEAT_SCHEDULE = {
    "weekly-rollover": {
        "task": "rlhf.tasks.weekly_rollover",
        "schedule": LOOP_ROLLOVER_CRON,
    },
    # Sends again the comparisons and iterations whose message or worker was lost.
    "reconcile": {"task": "tandem.tasks.reconcile", "schedule": RECONCILE_SECONDS},
}
