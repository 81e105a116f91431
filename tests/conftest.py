import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


# --- services -------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def services_are_up():
    """Fail at once, with the way to start it, when a service the suite needs is down."""
    import redis
    from django.conf import settings

    url = settings.CELERY_BROKER_URL
    if url.startswith("redis://"):
        try:
            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            pytest.exit(f"Redis at {url} is not reachable ({exc}); start it (see README, Tests)", returncode=3)


@pytest.fixture(autouse=True)
def empty_media_root(settings):
    """Each test starts and ends with an empty storage, so 'no file left behind' can be checked."""
    root = Path(settings.MEDIA_ROOT)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def stored_files() -> list[str]:
    from django.conf import settings

    root = Path(settings.MEDIA_ROOT)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture(autouse=True)
def migration_data_after_flush(request):
    """Transactional tests (real workers, the browser) end with a flush of the database; put back
    what the migrations seed (taxonomy, role groups) before each of them."""
    marker = request.node.get_closest_marker("django_db")
    transactional = (marker is not None and marker.kwargs.get("transaction")) or bool(
        {"transactional_db", "live_server"} & set(request.fixturenames)
    )
    if not transactional:
        return
    request.getfixturevalue("transactional_db")
    from inputs.models import Dimension, Task, TaskDimension
    from inputs.taxonomy_seed import seed
    from onereward.roles import sync_role_groups

    seed(Task, Dimension, TaskDimension)
    sync_role_groups()


# --- images ---------------------------------------------------------------------------------


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def photo(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    """A small RGB picture with structure (gradients + noise), different for each seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), np.full_like(x, 128.0)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def box_mask(width: int = 64, height: int = 48, box=(16, 12, 40, 30)) -> Image.Image:
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, box)
    return mask


# --- a real Celery worker -------------------------------------------------------------------


class WorkerProcess:
    def __init__(self, process, log_path, env_overrides=None, queues="default,gpu"):
        self.process = process
        self.log_path = log_path
        self.env_overrides = env_overrides or {}
        self.queues = queues

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM killer would: no warm shutdown, no message restored."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def restart(self) -> None:
        """Start again under the same name, as a supervisor would after a crash."""
        fresh = start_worker(self.env_overrides, self.log_path, self.queues, purge=False)
        self.process = fresh.process


def start_worker(
    env_overrides: dict, log_path: Path, queues: str = "default,gpu", purge: bool = True, name: str | None = None
) -> WorkerProcess:
    env = {**os.environ, **env_overrides}
    with open(log_path, "a") as log:
        log.write("\n--- worker start ---\n")
    offset = Path(log_path).stat().st_size
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "onereward", "worker", "-Q", queues, "--pool", "solo",
         "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
         *(["--purge"] if purge else []), *(["--hostname", name] if name else [])],
        cwd=REPO, env=env, stdout=open(log_path, "a"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited at start:\n{Path(log_path).read_text()}")
        if "ready." in Path(log_path).read_text(errors="replace")[offset:]:
            return WorkerProcess(process, log_path, env_overrides, queues)
        time.sleep(0.2)
    stop_worker(WorkerProcess(process, log_path))
    raise RuntimeError(f"the Celery worker did not become ready in 60 s:\n{Path(log_path).read_text()}")


def stop_worker(worker: WorkerProcess) -> None:
    if worker.process.poll() is None:
        os.killpg(worker.process.pid, signal.SIGTERM)
        try:
            worker.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait()


def database_url_of_test_db() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}:{s['PASSWORD'] or ''}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real worker on the configured broker (Redis in the suite), reading the test database."""
    from django.conf import settings

    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    worker = start_worker(
        {"DATABASE_URL": database_url_of_test_db(), "ONEREWARD_MEDIA_ROOT": str(settings.MEDIA_ROOT),
         "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
         # A job the killed-worker tests leave unacknowledged comes back in seconds, not minutes.
         "ONEREWARD_REDELIVERY_SECONDS": "8"},
        log_path,
    )
    yield worker
    stop_worker(worker)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- users ----------------------------------------------------------------------------------


@pytest.fixture
def make_user(db):
    from django.contrib.auth.models import User

    from onereward.roles import assign_role

    def make(username: str, role: str | None = None, password: str = "pass-for-tests-1") -> User:
        user = User.objects.create_user(username=username, password=password)
        if role:
            assign_role(user, role)
        user.refresh_from_db()
        return user

    return make
