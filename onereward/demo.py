"""The demo that `manage.py seed_demo` (and so `make run`) sets up: users and inputs (the inputs
app), and the small demo models built from configs with fixed seeds, so that the whole loop runs
on a machine with no model hub and no GPU.

Each app adds its part by connecting to `seeding_demo`; a receiver returns the lines to print.
Apps higher in the loop cannot be imported by the inputs app, hence a signal rather than calls.
"""
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.dispatch import Signal

# Sent by seed_demo once its users and inputs exist; receivers return a list of lines to print.
seeding_demo = Signal()

DEMO_LABEL = "demo model: small, random weights"


def demo_models_dir() -> Path:
    return Path(settings.ONEREWARD_DEMO_MODELS_DIR)


def build_once(name: str, marker: str, build: Callable[[Path], object]) -> tuple[Path, bool]:
    """The demo model directory `name`, built by `build(directory)` unless `marker` (a file the
    finished model has) is there already. Built aside and renamed, so an interrupted build leaves
    nothing a loader could half-read. Returns (directory, whether it was built now)."""
    directory = demo_models_dir() / name
    if (directory / marker).is_file():
        return directory, False
    partial = directory.with_name(f".{name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        build(partial)
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(partial, directory)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return directory, True
