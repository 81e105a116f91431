"""The web side (settings, every app, the admin, the URLs and the API) loads without the GPU
packages: a web host installs the project without the `gpu` extra (pyproject.toml), and torch alone
is about 300 MiB of a process's memory."""
import subprocess
import sys

from tests.conftest import REPO

PROBE = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "onereward.settings")
import django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns  # every app's admin, views, serializers and API modules
import onereward.celery  # noqa: F401
print(sorted(name for name in ("torch", "diffusers", "transformers", "peft", "accelerate") if name in sys.modules))
"""


def test_the_web_side_imports_no_gpu_package():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
