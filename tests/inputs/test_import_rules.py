"""The rules every input goes through (inputs.importing.import_inputs), whatever its entry point.

Each refusal must name the file or entry and say what is wrong, and leave no Input row, no Tag and no
stored file behind.
"""
import io

import numpy as np
import pytest
from PIL import Image

from inputs.core.images import CanvasSpec, InputProblem
from inputs.importing import ImportRejected, InputSpec, find_problems, import_inputs
from inputs.models import Input, Tag
from tests.conftest import box_mask, photo, png_bytes, stored_files

from .import_helpers import (
    BOX,
    H,
    W,
    antialiased_mask,
    assert_nothing_stored,
    fill_spec,
    gradient_mask,
    huge_png,
    mask_png,
    problem_lines,
    random_bytes,
    rgba_mask_with_transparency,
    solid_mask,
    source_png,
    stored_image,
    truncated_png,
)

pytestmark = pytest.mark.django_db


def rejected(specs) -> list[str]:
    """Import SPECS, expect a refusal, check nothing was left, return the problem lines."""
    with pytest.raises(ImportRejected) as info:
        import_inputs(specs)
    assert_nothing_stored()
    lines = problem_lines(info.value.problems)
    # The exception's own text (what the CLI and logs show) lists every problem too.
    for line in lines:
        assert line in str(info.value)
    return lines


def only_problem(specs) -> str:
    lines = rejected(specs)
    assert len(lines) == 1, lines
    return lines[0]


# --- source and mask files that cannot be decoded --------------------------------------------


@pytest.mark.parametrize(
    "data, words",
    [
        pytest.param(random_bytes(), "not an image", id="random-bytes"),
        pytest.param(truncated_png(), "truncated or corrupt", id="png-cut-in-half"),
        pytest.param(b"", "file is empty", id="empty-file"),
    ],
)
def test_unreadable_source_is_refused_by_name(data, words):
    line = only_problem([fill_spec("holiday.png", source=data)])
    assert line.startswith("holiday.png: ")
    assert words in line


@pytest.mark.parametrize(
    "data, words",
    [
        pytest.param(random_bytes(seed=5), "not an image", id="random-bytes"),
        pytest.param(truncated_png(seed=3), "truncated or corrupt", id="png-cut-in-half"),
        pytest.param(b"", "file is empty", id="empty-file"),
    ],
)
def test_unreadable_mask_is_refused_by_name(data, words):
    line = only_problem([fill_spec("holiday.png", mask=data, mask_name="holiday_mask.png")])
    assert line.startswith("holiday_mask.png: ")
    assert words in line


def test_truncated_jpeg_is_refused():
    buffer = io.BytesIO()
    photo().save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    line = only_problem([fill_spec("cut.jpg", source=data[: len(data) // 2])])
    assert line.startswith("cut.jpg: ")
    assert "truncated or corrupt" in line


# --- masks ------------------------------------------------------------------------------------


def test_mask_of_another_size_is_refused_naming_both_files_and_sizes():
    line = only_problem([fill_spec("a.png", mask=mask_png(32, 24, (4, 4, 10, 10)), mask_name="a_mask.png")])
    assert line.startswith("a_mask.png: ")
    assert "32x24" in line and "a.png" in line and "64x48" in line
    assert "same size" in line


@pytest.mark.parametrize(
    "mask, words",
    [
        pytest.param(solid_mask(0), "mask is empty", id="all-black"),
        pytest.param(solid_mask(10), "mask is empty", id="near-black"),
        pytest.param(solid_mask(255), "covers the whole image", id="all-white"),
        pytest.param(gradient_mask(), "not binary", id="gradient"),
        pytest.param(solid_mask(128), "not binary", id="all-grey"),
        pytest.param(rgba_mask_with_transparency(), "transparent", id="rgba-with-transparent-pixels"),
    ],
)
def test_bad_mask_is_refused(mask, words):
    line = only_problem([fill_spec("a.png", mask=mask, mask_name="a_mask.png")])
    assert line.startswith("a_mask.png: ")
    assert words in line


def test_gradient_mask_message_gives_the_grey_share():
    line = only_problem([fill_spec("a.png", mask=gradient_mask(), mask_name="a_mask.png")])
    assert "% of its pixels are grey" in line


def test_la_mask_with_partial_alpha_is_refused():
    pixels = np.stack([np.asarray(box_mask()), np.full((H, W), 255, np.uint8)], axis=-1)
    pixels[20, 20, 1] = 128
    mask = png_bytes(Image.fromarray(pixels, "LA"))
    line = only_problem([fill_spec("a.png", mask=mask, mask_name="a_mask.png")])
    assert line.startswith("a_mask.png: ") and "transparent" in line


def test_mask_with_transparency_colour_key_is_refused():
    """A greyscale PNG whose tRNS chunk makes black transparent: its black area is see-through, so the
    mask is as transparent as an RGBA one and must be refused the same way."""
    buffer = io.BytesIO()
    box_mask().save(buffer, format="PNG", transparency=0)
    line = only_problem([fill_spec("a.png", mask=buffer.getvalue(), mask_name="a_mask.png")])
    assert line.startswith("a_mask.png: ") and "transparent" in line


def test_opaque_rgba_mask_is_accepted():
    mask = png_bytes(box_mask().convert("RGBA"))
    (created,) = import_inputs([fill_spec("a.png", mask=mask)])
    assert set(np.unique(np.asarray(stored_image(created.mask)))) == {0, 255}


def test_a_few_antialiased_grey_pixels_are_binarised():
    mask, expected = antialiased_mask()
    (created,) = import_inputs([fill_spec("a.png", mask=mask)])
    stored = stored_image(created.mask)
    assert stored.mode == "L" and stored.size == (W, H)
    values = np.asarray(stored)
    assert set(np.unique(values)) == {0, 255}
    np.testing.assert_array_equal(values, expected)
    assert created.mask_coverage == pytest.approx((expected == 255).mean())


def test_rgb_mask_is_accepted_and_stored_as_greyscale():
    (created,) = import_inputs([fill_spec("a.png", mask=png_bytes(box_mask().convert("RGB")))])
    np.testing.assert_array_equal(np.asarray(stored_image(created.mask)), np.asarray(box_mask()))


# --- size limits ------------------------------------------------------------------------------


def test_source_over_the_configured_pixel_limit_is_refused(settings):
    settings.ONEREWARD_MAX_IMAGE_PIXELS = 3000  # 64x48 = 3072
    line = only_problem([fill_spec("big.png")])
    assert line.startswith("big.png: ")
    assert "64x48" in line and "over the limit" in line and "ONEREWARD_MAX_IMAGE_PIXELS" in line


def test_image_at_the_pixel_limit_is_accepted(settings):
    settings.ONEREWARD_MAX_IMAGE_PIXELS = W * H
    assert len(import_inputs([fill_spec("a.png")])) == 1


def test_mask_over_the_configured_pixel_limit_is_refused(settings):
    settings.ONEREWARD_MAX_IMAGE_PIXELS = 3000
    spec = fill_spec("small.png", source=source_png(width=50, height=50), mask=mask_png(64, 48), mask_name="m.png")
    line = only_problem([spec])
    assert line.startswith("m.png: ") and "over the limit" in line


@pytest.mark.parametrize(
    "width, height, words",
    [
        pytest.param(20000, 20000, "decompression bomb", id="400MP-over-pillow-hard-limit"),
        pytest.param(10000, 10000, "decompression bomb", id="100MP-over-pillow-warning"),
        pytest.param(7000, 7000, "over the limit", id="49MP-over-default-limit"),
    ],
)
def test_decompression_bomb_png_is_refused_before_decoding(width, height, words):
    data = huge_png(width, height)
    assert len(data) < 200_000  # a few KB on disk, gigabytes once decoded
    line = only_problem([fill_spec("bomb.png", source=data)])
    assert line.startswith("bomb.png: ")
    assert words in line


def test_pixel_limit_raised_above_pillows_default_is_honoured(settings, monkeypatch):
    """ONEREWARD_MAX_IMAGE_PIXELS is the limit: raised to 200 MP (applied at start-up), a 100 MP
    image is within it and is decoded (this one is cut short, so decoding finds it truncated), not
    refused as a bomb by Pillow's own, lower default (89.5 MP)."""
    from django.apps import apps

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored afterwards
    settings.ONEREWARD_MAX_IMAGE_PIXELS = 200_000_000
    apps.get_app_config("inputs").ready()
    data = huge_png(10000, 10000)
    line = only_problem([fill_spec("pano.png", source=data[: len(data) // 2])])
    assert line.startswith("pano.png: ")
    assert "truncated or corrupt" in line


def test_decompression_bomb_as_mask_is_refused():
    line = only_problem([fill_spec("a.png", mask=huge_png(20000, 20000), mask_name="a_mask.png")])
    assert line.startswith("a_mask.png: ") and "decompression bomb" in line


def test_extend_canvas_over_the_pixel_limit_is_refused(settings):
    settings.ONEREWARD_MAX_IMAGE_PIXELS = 5000
    spec = fill_spec("wide.png", task="image_extend", mask=None, mask_name=None, prompt="",
                     canvas=CanvasSpec(padding=(0, 0, 64, 0)))
    line = only_problem([spec])
    assert line.startswith("wide.png: ")
    assert "canvas 128x48" in line and "over the limit" in line


# --- task, prompt, tags, metadata -------------------------------------------------------------


def test_unknown_task_is_refused_and_known_tasks_listed():
    line = only_problem([fill_spec("a.png", task="image_paint")])
    assert line.startswith("a.png: ")
    assert "unknown task 'image_paint'" in line
    for slug in ("image_fill", "image_extend", "object_removal"):
        assert slug in line


def test_inactive_task_is_refused():
    from inputs.models import Task

    Task.objects.filter(slug="text_rendering").update(active=False)
    line = only_problem([fill_spec("a.png", task="text_rendering")])
    assert "unknown task 'text_rendering'" in line


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_image_fill_without_prompt_is_refused(prompt):
    line = only_problem([fill_spec("a.png", prompt=prompt)])
    assert line.startswith("a.png: ")
    assert "'image_fill' needs a prompt" in line


def test_extend_takes_no_prompt_and_removal_drops_a_given_one():
    extend = fill_spec("e.png", task="image_extend", mask=None, mask_name=None, prompt="",
                       canvas=CanvasSpec(padding=(0, 0, 16, 0)))
    removal = fill_spec("r.png", seed=1, task="object_removal", prompt="please remove the bin")
    created = import_inputs([extend, removal])
    assert [row.prompt for row in created] == ["", ""]
    assert created[0].effective_prompt == "high-definition, perfect composition"
    assert created[1].effective_prompt == "remove"


@pytest.mark.parametrize("tag", ["", "   ", "x" * 65, 7])
def test_bad_tag_is_refused(tag):
    line = only_problem([fill_spec("a.png", tags=["fine", tag])])
    assert line.startswith("a.png: ") and "tag" in line and "64 characters" in line


def test_metadata_that_is_not_an_object_is_refused():
    line = only_problem([fill_spec("a.png", metadata=["not", "an", "object"])])
    assert line == "a.png: metadata must be a JSON object"


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"prompt": "a red\x00 kite"}, id="prompt"),
        pytest.param({"metadata": {"note": "a\x00b"}}, id="metadata"),
        pytest.param({"tags": ["ca\x00t"]}, id="tag"),
    ],
)
def test_text_with_nul_character_is_refused_as_a_problem(overrides):
    """PostgreSQL cannot store NUL in text or jsonb: such an entry must be a listed problem, not a
    database error escaping the importer (a 500 in the API, a traceback in the command)."""
    line = only_problem([fill_spec("a.png", **overrides)])
    assert line.startswith("a.png: ")


def test_failure_after_the_files_were_written_leaves_no_file():
    """A tag is stored after the files are written; when the database refuses it, the files written
    by this import are removed again (whether the entry is refused up front or by the database)."""
    from django.db import DataError

    with pytest.raises((ImportRejected, DataError)):
        import_inputs([fill_spec("a.png"), fill_spec("b.png", seed=1, tags=["bad\x00tag"])])
    assert Input.objects.count() == 0
    assert stored_files() == []


def test_no_specs_is_refused():
    assert rejected([]) == ["(import): no inputs found"]


# --- duplicates -------------------------------------------------------------------------------


def test_input_already_imported_is_refused_naming_the_existing_input():
    (first,) = import_inputs([fill_spec("a.png")])
    files_before = stored_files()
    with pytest.raises(ImportRejected) as info:
        import_inputs([fill_spec("again.png")])
    assert problem_lines(info.value.problems) == [f"again.png: already imported as input #{first.pk}"]
    assert Input.objects.count() == 1
    assert stored_files() == files_before


def test_duplicate_within_one_import_is_refused_and_nothing_stored():
    lines = rejected([fill_spec("a.png"), fill_spec("b.png", seed=1), fill_spec("copy-of-a.png")])
    assert lines == ["copy-of-a.png: duplicate of a.png in this import"]


def test_same_content_with_prompt_differing_only_in_spaces_is_a_duplicate():
    lines = rejected([fill_spec("a.png", prompt="a red kite"), fill_spec("b.png", prompt="  a red kite \n")])
    assert lines == ["b.png: duplicate of a.png in this import"]


def test_skip_existing_leaves_out_what_is_stored_and_imports_the_rest():
    (first,) = import_inputs([fill_spec("a.png")])
    created = import_inputs([fill_spec("again-a.png"), fill_spec("b.png", seed=1)], skip_existing=True)
    assert [row.original_name for row in created] == ["b.png"]
    assert Input.objects.count() == 2
    assert len(stored_files()) == 6
    assert import_inputs([fill_spec("a.png"), fill_spec("b.png", seed=1)], skip_existing=True) == []
    assert Input.objects.count() == 2 and len(stored_files()) == 6


def test_skip_existing_still_refuses_bad_entries_and_duplicates_within_the_import():
    import_inputs([fill_spec("a.png")])
    before = stored_files()
    with pytest.raises(ImportRejected) as info:
        import_inputs([fill_spec("a.png"), fill_spec("b.png", seed=1), fill_spec("b-copy.png", seed=1),
                       fill_spec("c.png", seed=2, source=b"")], skip_existing=True)
    assert sorted(problem_lines(info.value.problems)) == [
        "b-copy.png: duplicate of b.png in this import", "c.png: file is empty",
    ]
    assert Input.objects.count() == 1 and stored_files() == before


# --- file names -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil.png", "/abs.png", "dir/../../evil.png", "C:evil.png", "dir\\evil.png"])
def test_source_name_with_a_path_is_refused(name):
    line = only_problem([fill_spec(name, entry="entry-1")])
    assert line.startswith(f"{name}: ")
    assert "path outside its folder" in line


@pytest.mark.parametrize("name", ["../a_mask.png", "/tmp/a_mask.png"])
def test_mask_name_with_a_path_is_refused(name):
    line = only_problem([fill_spec("a.png", mask_name=name)])
    assert line.startswith(f"{name}: ") and "path outside its folder" in line


# --- extend canvas errors ---------------------------------------------------------------------


def extend_spec(name="e.png", canvas=None, **overrides) -> InputSpec:
    fields = dict(task="image_extend", mask=None, mask_name=None, prompt="", canvas=canvas)
    fields.update(overrides)
    return fill_spec(name, **fields)


def test_canvas_smaller_than_the_source_is_refused():
    line = only_problem([extend_spec("e.png", CanvasSpec(size=(60, 80)))])
    assert line == "e.png: canvas size 60x80 is smaller than the source 64x48"


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"padding": [-8, 0, 0, 0]}, "padding cannot be negative"),
        ({"padding": "0,0,-16,0"}, "padding cannot be negative"),
        ({"padding": [1, 2, 3]}, "expected 4 numbers"),
        ({"size": "0x48"}, "size must be positive"),
        ({"ratio": "16:0"}, "ratio terms must be positive"),
        ({"ratio": "wide"}, "expected 2 numbers"),
        ({"padding": [0, 0, 16, 0], "ratio": "1:1"}, "exactly one of padding, size or ratio"),
        ({}, "exactly one of padding, size or ratio"),
        ({"border": 16}, "unknown keys ['border']"),
    ],
)
def test_bad_canvas_description_is_refused(raw, words):
    with pytest.raises(InputProblem) as info:
        CanvasSpec.parse(raw, "e.png")
    assert info.value.entry == "e.png"
    assert words in info.value.problem


@pytest.mark.parametrize(
    "canvas",
    [CanvasSpec(padding=(0, 0, 0, 0)), CanvasSpec(size=(W, H)), CanvasSpec(ratio=(4, 3))],
    ids=["zero-padding", "same-size", "same-ratio"],
)
def test_canvas_without_border_is_refused(canvas):
    line = only_problem([extend_spec("e.png", canvas)])
    assert line.startswith("e.png: ") and "adds no border" in line


def test_both_mask_and_canvas_are_refused():
    spec = extend_spec("e.png", CanvasSpec(padding=(0, 0, 16, 0)), mask=mask_png(), mask_name="e_mask.png")
    line = only_problem([spec])
    assert line == "e.png: give either a mask or a canvas to extend, not both"


def test_canvas_on_a_task_that_is_not_extend_is_refused():
    spec = fill_spec("a.png", mask=None, mask_name=None, canvas=CanvasSpec(padding=(0, 0, 16, 0)))
    line = only_problem([spec])
    assert line == "a.png: task 'image_fill' takes a mask, not a canvas to extend"


def test_extend_without_mask_or_canvas_is_refused():
    line = only_problem([extend_spec("e.png", None)])
    assert line.startswith("e.png: no mask given") and "canvas to extend" in line


def test_fill_without_mask_is_refused():
    line = only_problem([fill_spec("a.png", mask=None, mask_name=None)])
    assert line == "a.png: no mask given"


# --- all or nothing ---------------------------------------------------------------------------


def test_one_bad_spec_among_good_ones_stores_none():
    lines = rejected([fill_spec("a.png"), fill_spec("b.png", seed=1, mask=solid_mask(0)), fill_spec("c.png", seed=2)])
    assert lines == ["b_mask.png: mask is empty (no white pixel): there is nothing to generate"]


def test_every_bad_spec_is_listed():
    specs = [
        fill_spec("good.png"),
        fill_spec("noise.png", seed=1, source=random_bytes()),
        fill_spec("soft.png", seed=2, mask=gradient_mask()),
        fill_spec("silent.png", seed=3, prompt=""),
        fill_spec("odd.png", seed=4, task="nope"),
        fill_spec("good.png", entry="manifest.jsonl line 9"),
    ]
    lines = rejected(specs)
    assert len(lines) == 5, lines
    assert any(line.startswith("noise.png: not an image") for line in lines)
    assert any(line.startswith("soft_mask.png: mask is not binary") for line in lines)
    assert any(line.startswith("silent.png: ") and "needs a prompt" in line for line in lines)
    assert any(line.startswith("odd.png: unknown task 'nope'") for line in lines)
    assert "manifest.jsonl line 9: duplicate of good.png in this import" in lines


def test_find_problems_checks_without_storing():
    prepared, problems = find_problems([fill_spec("a.png"), fill_spec("b.png", source=b"")])
    assert [item.spec.entry for item in prepared] == ["a.png"]
    assert problem_lines(problems) == ["b.png: file is empty"]
    assert_nothing_stored()


# --- good inputs ------------------------------------------------------------------------------


def test_good_input_is_stored_with_its_files_tags_and_metadata(make_user):
    user = make_user("importer", "admin")
    spec = fill_spec("kite.png", prompt="  a red kite  ", tags=["sky", " outdoor ", "sky"],
                     metadata={"source": "unit", "nested": {"n": [1, 2]}})
    (created,) = import_inputs([spec], user=user)
    created.refresh_from_db()
    assert created.task.slug == "image_fill"
    assert created.prompt == "a red kite"
    assert (created.width, created.height) == (W, H)
    assert created.original_name == "kite.png"
    assert created.created_by == user
    assert created.metadata == {"source": "unit", "nested": {"n": [1, 2]}}
    assert sorted(created.tags.values_list("name", flat=True)) == ["outdoor", "sky"]
    assert sorted(Tag.objects.values_list("name", flat=True)) == ["outdoor", "sky"]
    box_area = (BOX[2] - BOX[0]) * (BOX[3] - BOX[1])
    assert created.mask_coverage == pytest.approx(box_area / (W * H))
    assert len(created.content_hash) == 64
    # Three files, under the input's own folder; the source is the exact pixels given.
    files = stored_files()
    assert len(files) == 3
    assert {f.rsplit("/", 1)[1] for f in files} == {"source.png", "mask.png", "thumbnail.jpg"}
    assert {created.source.name, created.mask.name, created.thumbnail.name} == set(files)
    assert all(f.startswith(f"inputs/{created.content_hash[:2]}/{created.content_hash}-") for f in files)
    source = stored_image(created.source)
    assert source.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(source), np.asarray(photo()))
    np.testing.assert_array_equal(np.asarray(stored_image(created.mask)), np.asarray(box_mask()))
    assert stored_image(created.thumbnail).format == "JPEG"


def test_existing_tags_are_reused():
    Tag.objects.create(name="sky")
    import_inputs([fill_spec("a.png", tags=["sky"]), fill_spec("b.png", seed=1, tags=["sky", "sea"])])
    assert sorted(Tag.objects.values_list("name", flat=True)) == ["sea", "sky"]
    assert Tag.objects.get(name="sky").inputs.count() == 2


def test_16_bit_greyscale_source_is_scaled_not_clipped():
    """A 16-bit greyscale PNG keeps its tones: stored as 8 bits (value / 257), not clipped to white."""
    ramp = np.tile(np.linspace(0, 65535, W), (H, 1)).astype(np.uint16)
    source = Image.fromarray(ramp)
    assert source.mode == "I;16"
    (created,) = import_inputs([fill_spec("deep.png", source=png_bytes(source))])
    stored = np.asarray(stored_image(created.source)).astype(int)
    expected = np.round(ramp / 257).astype(int)
    for channel in range(3):
        assert np.abs(stored[:, :, channel] - expected).max() <= 1


def test_transparent_source_is_composited_on_white():
    pixels = np.asarray(photo().convert("RGBA")).copy()
    pixels[0:5, 0:5, 3] = 0
    (created,) = import_inputs([fill_spec("a.png", source=png_bytes(Image.fromarray(pixels, "RGBA")))])
    stored = np.asarray(stored_image(created.source))
    assert (stored[0:5, 0:5] == 255).all()
    np.testing.assert_array_equal(stored[10:, 10:], np.asarray(photo())[10:, 10:])


@pytest.mark.parametrize(
    "canvas, size, box",
    [
        # padding: 64+0+64 = 128 wide, already multiples of 16.
        pytest.param(CanvasSpec(padding=(0, 0, 64, 0)), (128, 48), (0, 0), id="padding-right"),
        # padding 10+10 -> 84, grown to 96: the extra 12 split 6/6.
        pytest.param(CanvasSpec(padding=(10, 0, 10, 0)), (96, 48), (16, 0), id="padding-grown"),
        # padding 0,8,0,0 -> 56 high, grown to 64: the extra 8 split 4/4.
        pytest.param(CanvasSpec(padding=(0, 8, 0, 0)), (64, 64), (0, 12), id="padding-top-grown"),
        # size 100x60 centred (18, 6), grown to 112x64 (+6, +2).
        pytest.param(CanvasSpec(size=(100, 60)), (112, 64), (24, 8), id="size"),
        # ratio 1:1 -> 64x64, source centred.
        pytest.param(CanvasSpec(ratio=(1, 1)), (64, 64), (0, 8), id="ratio-square"),
        # ratio 16:9 -> 86x48 (ceil(48*16/9)), grown to 96x48.
        pytest.param(CanvasSpec(ratio=(16, 9)), (96, 48), (16, 0), id="ratio-wide"),
        # ratio 1:2 -> 64x128.
        pytest.param(CanvasSpec(ratio=(1, 2)), (64, 128), (0, 40), id="ratio-portrait"),
    ],
)
def test_extend_builds_a_canvas_of_multiples_of_16_with_the_border_masked(canvas, size, box):
    (created,) = import_inputs([extend_spec("e.png", canvas, tags=["extend"])])
    width, height = size
    left, top = box
    assert (created.width, created.height) == size
    assert width % 16 == 0 and height % 16 == 0
    image = np.asarray(stored_image(created.source))
    mask = np.asarray(stored_image(created.mask))
    assert image.shape == (height, width, 3) and mask.shape == (height, width)
    # The mask is white exactly on the new border, black exactly over the source.
    expected = np.full((height, width), 255, np.uint8)
    expected[top: top + H, left: left + W] = 0
    np.testing.assert_array_equal(mask, expected)
    assert mask[top, left] == 0 and mask[top + H - 1, left + W - 1] == 0
    if left > 0:
        assert mask[top, left - 1] == 255
    if top > 0:
        assert mask[top - 1, left] == 255
    # The source sits unchanged at its box; the border is neutral grey.
    np.testing.assert_array_equal(image[top: top + H, left: left + W], np.asarray(photo()))
    assert (image[expected == 255] == 127).all()
    assert created.mask_coverage == pytest.approx(1 - (W * H) / (width * height))
    assert created.metadata["extend"] == {
        "canvas": canvas.as_dict(),
        "source_box": {"left": left, "top": top, "width": W, "height": H},
        "source_size": [W, H],
    }


def test_extend_keeps_given_metadata_beside_the_placement():
    (created,) = import_inputs([extend_spec("e.png", CanvasSpec(padding=(0, 0, 16, 0)), metadata={"shot": 3})])
    assert created.metadata["shot"] == 3
    assert created.metadata["extend"]["source_box"] == {"left": 0, "top": 0, "width": W, "height": H}


def test_extend_with_its_own_mask_is_accepted():
    spec = fill_spec("e.png", task="image_extend", prompt="")
    (created,) = import_inputs([spec])
    assert "extend" not in created.metadata


def exif_rotated_jpeg() -> bytes:
    """A 64x48 JPEG whose EXIF says 'rotate 90 degrees clockwise to view' (orientation 6): red in
    the stored top-left corner, blue elsewhere."""
    pixels = np.zeros((H, W, 3), np.uint8)
    pixels[:, :] = (0, 0, 255)
    pixels[0:16, 0:16] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def test_exif_rotated_jpeg_is_stored_upright():
    data = exif_rotated_jpeg()
    assert Image.open(io.BytesIO(data)).size == (W, H)
    # Upright the picture is 48x64, so its mask is 48x64 too.
    spec = fill_spec("phone.jpg", source=data, mask=mask_png(H, W, (8, 20, 40, 44)), mask_name="phone_mask.png")
    (created,) = import_inputs([spec])
    assert (created.width, created.height) == (H, W)
    source = np.asarray(stored_image(created.source)).astype(int)
    assert source.shape == (W, H, 3)
    # Rotated clockwise, the stored top-left corner is now the top-right one.
    assert np.abs(source[2:14, H - 14: H - 2] - (255, 0, 0)).max() < 40
    assert np.abs(source[2:14, 2:14] - (0, 0, 255)).max() < 40
    assert np.abs(source[W - 14: W - 2, H - 14: H - 2] - (0, 0, 255)).max() < 40


def test_mask_sized_for_the_unrotated_jpeg_is_refused():
    spec = fill_spec("phone.jpg", source=exif_rotated_jpeg(), mask=mask_png(), mask_name="phone_mask.png")
    line = only_problem([spec])
    assert line.startswith("phone_mask.png: ") and "64x48" in line and "48x64" in line


def webp_lossless(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", lossless=True, quality=100, exact=True)
    return buffer.getvalue()


def test_content_hash_ignores_the_encoding_of_the_same_pixels():
    png = source_png()
    webp = webp_lossless(photo())
    assert png != webp
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(webp)).convert("RGB")), np.asarray(photo()))
    mask_as_bmp = png_bytes(box_mask(), fmt="BMP")
    prepared, problems = find_problems(
        [fill_spec("a.png", source=png), fill_spec("a.webp", source=webp, mask=mask_as_bmp)]
    )
    assert problem_lines(problems) == ["a.webp: duplicate of a.png in this import"]
    assert prepared[0].content_hash == prepared[1].content_hash

    (first,) = import_inputs([fill_spec("a.png", source=png)])
    with pytest.raises(ImportRejected) as info:
        import_inputs([fill_spec("a.webp", source=webp)])
    assert problem_lines(info.value.problems) == [f"a.webp: already imported as input #{first.pk}"]


def test_content_hash_differs_when_the_prompt_task_pixels_or_mask_differ():
    specs = [
        fill_spec("a.png", prompt="a red kite"),
        fill_spec("b.png", prompt="a blue kite"),
        fill_spec("c.png", prompt="a red kite", task="text_rendering"),
        fill_spec("d.png", prompt="a red kite", seed=9),
        fill_spec("e.png", prompt="a red kite", mask=mask_png(box=(0, 0, 8, 8))),
    ]
    created = import_inputs(specs)
    assert len({row.content_hash for row in created}) == 5
    assert Input.objects.count() == 5
    assert len(stored_files()) == 15
