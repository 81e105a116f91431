"""The CPU baseline generator: real, judgeable candidates for every task, with no weights.

No database: the backend is plain Python. The demo photographs (scikit-image) are the inputs.
"""
import io
import itertools

import numpy as np
import pytest
from PIL import Image

from generation.core.backends.base import (
    BackendConfigError,
    CandidateSettings,
    GenerationRequest,
    check_backend_config,
    load_backend,
)
from generation.core.backends.cpu_baseline import METHODS, CpuBaselineBackend, describe, draw_choices
from generation.core.backends.cpu_text import prompt_colour, prompt_text
from inputs.core.images import CANVAS_FILL, build_canvas
from inputs.demo_inputs import demo_specs

N = 4
SEEDS = range(N)  # consecutive seeds cycle through the four methods


def _case(spec):
    source = Image.open(io.BytesIO(spec.source)).convert("RGB")
    if spec.canvas is not None:
        canvas, mask, _ = build_canvas(source, spec.canvas, spec.entry, max_pixels=10**8)
    else:
        canvas, mask = source, Image.open(io.BytesIO(spec.mask)).convert("L")
    return canvas, mask


def _request(spec, canvas, mask, seed, **settings):
    return GenerationRequest(canvas, mask, spec.prompt, spec.task, CandidateSettings(seed=seed, **settings))


@pytest.fixture(scope="module")
def backend():
    return CpuBaselineBackend.from_config({})


@pytest.fixture(scope="module")
def candidates(backend):
    """[(spec, canvas, mask, [N candidates])] for every demo input."""
    cases = []
    for spec in demo_specs():
        canvas, mask = _case(spec)
        images = backend.generate([_request(spec, canvas, mask, seed) for seed in SEEDS])
        cases.append((spec, canvas, mask, images))
    return cases


def test_demo_inputs_cover_every_task(candidates):
    assert {spec.task for spec, *_ in candidates} >= {"image_fill", "image_extend", "object_removal", "text_rendering"}


def test_one_rgb_image_per_request_the_canvas_size(candidates):
    for spec, canvas, _, images in candidates:
        assert len(images) == N, spec.entry
        for image in images:
            assert image.mode == "RGB" and image.size == canvas.size, spec.entry


def test_unmasked_area_is_the_canvas_bit_for_bit(candidates):
    for spec, canvas, mask, images in candidates:
        keep = np.asarray(mask) < 128
        for image in images:
            assert np.array_equal(np.asarray(image)[keep], np.asarray(canvas)[keep]), spec.entry


def test_candidates_differ_visibly_inside_the_mask(candidates):
    for spec, canvas, mask, images in candidates:
        hole = np.asarray(mask) >= 128
        pixels = [np.asarray(image).astype(np.int16)[hole] for image in images]
        for a, b in itertools.combinations(range(N), 2):
            difference = float(np.abs(pixels[a] - pixels[b]).mean())
            assert difference > 3.0, f"{spec.entry}: candidates {a} and {b} differ by {difference:.1f} levels"
        # And every candidate changed what was under the mask.
        original = np.asarray(canvas).astype(np.int16)[hole]
        assert all(np.abs(p - original).mean() > 3.0 for p in pixels), spec.entry


def test_same_request_same_pixels(backend, candidates):
    for spec, canvas, mask, images in candidates:
        seed = 2  # the patch fill, the one with random draws of its own
        again = backend.generate([_request(spec, canvas, mask, seed)])[0]
        assert again.tobytes() == images[seed].tobytes(), spec.entry


def test_extend_border_is_a_continuation_not_grey(candidates):
    extends = [c for c in candidates if c[0].task == "image_extend"]
    assert extends
    for spec, canvas, mask, images in extends:
        border = np.asarray(mask) >= 128
        for image in images:
            pixels = np.asarray(image)[border].astype(np.int16)
            assert pixels.std() > 4.0, spec.entry
            grey = np.all(np.abs(pixels - np.array(CANVAS_FILL)) <= 2, axis=1).mean()
            assert grey < 0.05, f"{spec.entry}: {grey:.0%} of the border is still the grey canvas"


def test_text_rendering_writes_words_that_stand_out(backend, candidates):
    texts = [c for c in candidates if c[0].task == "text_rendering"]
    assert texts
    for spec, canvas, mask, images in texts:
        hole = np.asarray(mask) >= 128
        for seed, image in zip(SEEDS, images):
            # A seed makes the same fill whatever the task; object removal is that fill, no words.
            background = backend.generate(
                [GenerationRequest(canvas, mask, "remove", "object_removal", CandidateSettings(seed=seed))]
            )[0]
            ink = np.abs(np.asarray(image).astype(np.int16) - np.asarray(background).astype(np.int16)).max(axis=2) > 30
            assert not (ink & ~hole).any(), spec.entry
            share = ink[hole].mean()
            assert 0.02 < share < 0.6, f"{spec.entry} seed {seed}: words cover {share:.1%} of the mask"
            luma = lambda a: np.asarray(a.convert("L")).astype(np.int16)  # noqa: E731
            contrast = np.abs(luma(image)[ink] - luma(background)[ink]).mean()
            assert contrast > 40, f"{spec.entry} seed {seed}: words differ by only {contrast:.0f} levels"


def test_every_method_for_fill_and_extend(backend):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128]
    picture = np.stack([x * 2, y * 2, np.full_like(x, 90)], axis=-1) + rng.normal(0, 12, (96, 128, 3))
    canvas = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))
    fill_mask = Image.new("L", canvas.size, 0)
    fill_mask.paste(255, (40, 30, 90, 70))
    extend_mask = Image.new("L", canvas.size, 255)
    extend_mask.paste(0, (24, 16, 104, 80))
    for method, (task, mask) in itertools.product(METHODS, (("image_fill", fill_mask), ("image_extend", extend_mask))):
        request = GenerationRequest(canvas, mask, "", task, CandidateSettings(seed=7, extra={"method": method}))
        out = np.asarray(backend.generate([request])[0]).astype(np.int16)
        hole = np.asarray(mask) >= 128
        assert np.array_equal(out[~hole], np.asarray(canvas)[~hole]), (method, task)
        assert np.abs(out[hole] - np.asarray(canvas)[hole]).mean() > 3, (method, task)


def test_big_canvas_is_worked_on_smaller_and_keeps_its_pixels():
    backend = CpuBaselineBackend.from_config({"max_side": 96})
    rng = np.random.default_rng(1)
    canvas = Image.fromarray(rng.integers(0, 255, (150, 230, 3), dtype=np.uint8))
    mask = Image.new("L", canvas.size, 0)
    mask.paste(255, (60, 40, 170, 110))
    for seed in SEEDS:
        out = backend.generate([GenerationRequest(canvas, mask, "", "image_fill", CandidateSettings(seed=seed))])[0]
        hole = np.asarray(mask) >= 128
        assert out.size == canvas.size
        assert np.array_equal(np.asarray(out)[~hole], np.asarray(canvas)[~hole])


def test_strength_keeps_that_much_of_the_canvas_under_the_mask(backend, candidates):
    spec, canvas, mask, images = next(c for c in candidates if c[0].task == "object_removal")
    hole = np.asarray(mask) >= 128
    half = backend.generate([_request(spec, canvas, mask, 0, strength=0.5)])[0]
    expected = 0.5 * np.asarray(images[0]).astype(np.float32) + 0.5 * np.asarray(canvas).astype(np.float32)
    assert np.abs(np.asarray(half)[hole] - expected[hole]).max() <= 1.0


def test_edge_cases(backend):
    canvas = Image.new("RGB", (40, 30), (10, 120, 200))
    empty = Image.new("L", canvas.size, 0)
    assert (
        backend.generate([GenerationRequest(canvas, empty, "", "image_fill", CandidateSettings(seed=1))])[0].tobytes()
        == canvas.tobytes()
    )
    full = Image.new("L", canvas.size, 255)
    out = backend.generate([GenerationRequest(canvas, full, "", "image_fill", CandidateSettings(seed=1))])[0]
    assert out.size == canvas.size and out.mode == "RGB"
    corner = Image.new("L", canvas.size, 0)
    corner.putpixel((39, 29), 255)
    for method in METHODS:
        settings = CandidateSettings(seed=-5, extra={"method": method})  # negative seeds are fine
        out = backend.generate([GenerationRequest(canvas, corner, "", "some_new_task", settings)])[0]
        assert np.array_equal(np.asarray(out)[:29], np.asarray(canvas)[:29])
    with pytest.raises(ValueError, match="mask is"):
        backend.generate(
            [GenerationRequest(canvas, Image.new("L", (10, 10), 255), "", "image_fill", CandidateSettings(seed=1))]
        )


def test_words_come_from_the_prompt():
    assert prompt_text('a banner in the sky reading "HELLO"') == "HELLO"
    assert prompt_text('the words "OPEN LATE" painted in white') == "OPEN LATE"
    assert prompt_text("a sign saying \u201cCaf\u00e9\u201d and \"BAR\"") == "Caf\u00e9 BAR"
    assert prompt_text("a shop sign with the name of the bakery") == "of the bakery"
    assert prompt_text("") == "TEXT"
    assert prompt_colour('the words "RED" painted in white') == ("white", (245, 245, 240))
    assert prompt_colour("a bouquet of yellow sunflowers")[0] == "yellow"
    assert prompt_colour("remove") is None


def test_choices_are_derivable_from_the_settings():
    settings = CandidateSettings(seed=12345, strength=0.9)
    shown = describe(settings, "image_fill")
    assert shown == describe(settings, "image_fill")
    assert shown["method"] == METHODS[12345 % len(METHODS)]
    assert shown["strength"] == 0.9
    assert not any(key.startswith("text_") for key in shown)
    assert "text_angle" in describe(settings, "text_rendering")
    assert describe(settings, "image_fill", methods=("patch",))["method"] == "patch"
    assert [draw_choices(CandidateSettings(seed=s)).method for s in SEEDS] == list(METHODS)
    assert describe(CandidateSettings(seed=1, extra={"method": "mirror", "grain": 0.0}))["grain"] == 0.0
    assert CpuBaselineBackend.from_config({"methods": ["telea"]}).describe(settings)["method"] == "telea"
    with pytest.raises(BackendConfigError, match="'sharpness'"):
        describe(CandidateSettings(seed=1, extra={"sharpness": 2}))
    with pytest.raises(BackendConfigError, match="method 'magic'"):
        describe(CandidateSettings(seed=1, extra={"method": "magic"}))
    with pytest.raises(BackendConfigError, match="grain must be a number"):
        describe(CandidateSettings(seed=1, extra={"grain": "lots"}))
    with pytest.raises(BackendConfigError, match="radius must be a whole number"):
        describe(CandidateSettings(seed=1, extra={"radius": 2.5}))


def test_check_config_normalises():
    assert CpuBaselineBackend.check_config({}) == {"methods": list(METHODS), "max_side": 1024, "patch_work_side": 192}
    assert check_backend_config("cpu_baseline", {"methods": "patch, telea, patch", "max_side": 512.0}) == {
        "methods": ["patch", "telea"], "max_side": 512, "patch_work_side": 192,
    }
    assert isinstance(load_backend("cpu_baseline", {"methods": ["mirror"]}), CpuBaselineBackend)


@pytest.mark.parametrize("config, named", [
    ({"method": ["telea"]}, "'method'"),
    ({"methods": ["telea", "magic"]}, "'magic'"),
    ({"methods": []}, "at least one"),
    ({"methods": [1, 2]}, "list of method names"),
    ({"methods": 3}, "list of method names"),
    ({"max_side": 10}, "max_side"),
    ({"max_side": True}, "max_side"),
    ({"max_side": "big"}, "max_side"),
    ({"max_side": 100.5}, "max_side"),
    ({"patch_work_side": 5000}, "patch_work_side"),
])
def test_check_config_names_the_bad_setting(config, named):
    with pytest.raises(BackendConfigError, match=named):
        check_backend_config("cpu_baseline", config)
    with pytest.raises(BackendConfigError):
        CpuBaselineBackend.from_config(config)
