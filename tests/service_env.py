"""Loaded as a pytest plugin (-p tests.service_env) before Django reads its settings: the suite runs
against the local PostgreSQL and Redis unless the environment already names others. A missing
service fails the run with a message; it never skips."""
import os
import tempfile

_scratch = tempfile.mkdtemp(prefix="onereward-tests-")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/onereward")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("ONEREWARD_DATA_DIR", os.path.join(_scratch, "var"))
os.environ.setdefault("ONEREWARD_MEDIA_ROOT", os.path.join(_scratch, "media"))
os.environ["DJANGO_SETTINGS_MODULE"] = "onereward.settings"
