"""The pixel limit on imported images: the platform's own check, and Pillow's guard left on."""
import subprocess
import sys

import pytest
from django.apps import apps
from PIL import Image

from inputs.core import images
from inputs.core.images import InputProblem

from .import_helpers import huge_png, source_png


def test_importing_the_image_rules_leaves_pillows_guard_as_it_was():
    # A fresh interpreter: in this one the module is imported already.
    script = ("from PIL import Image; before = Image.MAX_IMAGE_PIXELS; import inputs.core.images; "
              "print(before, Image.MAX_IMAGE_PIXELS)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after = result.stdout.split()
    assert before == after == str(89_478_485)  # Pillow's default: 1024 * 1024 * 1024 // 4 // 3


def test_start_up_raises_pillows_guard_to_the_platform_limit_and_never_switches_it_off(settings, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)
    settings.ONEREWARD_MAX_IMAGE_PIXELS = 1000  # under Pillow's: Pillow's stays, the platform checks its own
    apps.get_app_config("inputs").ready()
    assert Image.MAX_IMAGE_PIXELS == 89_478_485
    settings.ONEREWARD_MAX_IMAGE_PIXELS = 200_000_000
    apps.get_app_config("inputs").ready()
    assert Image.MAX_IMAGE_PIXELS == 200_000_000


def test_an_image_over_the_limit_is_refused_naming_the_file():
    with pytest.raises(InputProblem) as refused:
        images.open_image(source_png(width=64, height=48), "holiday/beach.png", max_pixels=3000)
    assert refused.value.entry == "holiday/beach.png"
    assert str(refused.value) == (
        "holiday/beach.png: image is 64x48 = 3,072 pixels (0.0 MP), over the limit of 3,000 pixels (0.0 MP) "
        "(ONEREWARD_MAX_IMAGE_PIXELS); refused before decoding (decompression bomb guard)")
    assert images.open_image(source_png(width=60, height=50), "fits.png", max_pixels=3000).size == (60, 50)


def test_an_image_over_pillows_own_guard_is_refused_naming_the_file(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses outright over 2000 pixels
    with pytest.raises(InputProblem) as refused:
        images.open_image(huge_png(100, 100), "scan.png", max_pixels=50_000)
    assert refused.value.entry == "scan.png"
    assert "over the limit of 50,000 pixels" in refused.value.problem
    assert "decompression bomb" in refused.value.problem
