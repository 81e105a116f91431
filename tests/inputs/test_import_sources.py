"""Readers of a folder, a JSONL manifest or a zip (inputs.core.sources), then the import.

Bad entries are listed by name, all of them, and nothing is stored while any is bad.
"""
import json
import os

import numpy as np
import pytest

from inputs.core.images import CanvasSpec
from inputs.core.sources import ImportDefaults, ZipLimits, specs_from_path
from inputs.importing import ImportRejected, find_problems, import_inputs, zip_limits
from inputs.models import Input
from tests.conftest import box_mask, photo, stored_files

from .import_helpers import (
    H,
    W,
    assert_nothing_stored,
    gradient_mask,
    mask_png,
    problem_lines,
    random_bytes,
    solid_mask,
    source_png,
    stored_image,
    truncated_png,
    zip_bytes,
)

pytestmark = pytest.mark.django_db


def write_files(root, files: dict[str, bytes | str]):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
    return root


def manifest(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def read(path, defaults=None):
    return specs_from_path(path, defaults or ImportDefaults(), zip_limits())


def all_problems(path, defaults=None) -> list[str]:
    """What the command line and the archive job report: the readers' problems and the checks of
    every readable entry, together."""
    specs, problems = read(path, defaults)
    return problem_lines(problems + find_problems(specs)[1])


def import_path(path, defaults=None):
    specs, problems = read(path, defaults)
    assert problem_lines(problems) == []
    return import_inputs(specs)


def by_name(rows) -> dict[str, Input]:
    return {row.original_name: row for row in rows}


# --- folders of pairs -------------------------------------------------------------------------


def assert_lists_each_problem(lines: list[str], expected: dict[str, str]) -> None:
    """One line per bad entry, each naming the entry and containing the expected words."""
    assert len(lines) == len(expected), lines
    for entry, words in expected.items():
        assert any(line.startswith(f"{entry}: ") and words in line for line in lines), (entry, lines)


def test_folder_of_pairs_with_prompt_and_settings_files(tmp_path):
    write_files(tmp_path, {
        "kite.png": source_png(0),
        "kite_mask.png": mask_png(),
        "kite.txt": "  a red kite in the sky\n",
        "boat.jpg": source_png(1),  # a PNG named .jpg: the content decides, not the suffix
        "boat-mask.png": mask_png(box=(0, 0, 20, 20)),
        "boat.json": json.dumps({"task": "object_removal", "tags": ["sea"], "metadata": {"shot": 7}}),
        "sub/dir/wide.png": source_png(2),
        "sub/dir/wide.json": json.dumps({"task": "image_extend", "canvas": {"padding": [0, 0, 32, 0]},
                                         "prompt": "more beach"}),
        "both.png": source_png(3),
        "both.MASK.png": mask_png(),
        "both.txt": "from the text file",
        "both.json": json.dumps({"prompt": "from the settings file", "tags": ["json"]}),
        "__MACOSX/._kite.png": b"resource fork",
        ".DS_Store": b"junk",
    })
    created = import_path(tmp_path, ImportDefaults(task="image_fill", tags=["batch-1"]))
    rows = by_name(created)
    assert set(rows) == {"kite.png", "boat.jpg", "sub/dir/wide.png", "both.png"}
    assert Input.objects.count() == 4

    kite = rows["kite.png"]
    assert (kite.task.slug, kite.prompt) == ("image_fill", "a red kite in the sky")
    assert list(kite.tags.values_list("name", flat=True)) == ["batch-1"]
    np.testing.assert_array_equal(np.asarray(stored_image(kite.mask)), np.asarray(box_mask()))

    boat = rows["boat.jpg"]
    assert (boat.task.slug, boat.prompt) == ("object_removal", "")
    assert sorted(boat.tags.values_list("name", flat=True)) == ["batch-1", "sea"]
    assert boat.metadata == {"shot": 7}
    np.testing.assert_array_equal(np.asarray(stored_image(boat.source)), np.asarray(photo(seed=1)))

    wide = rows["sub/dir/wide.png"]
    assert (wide.task.slug, wide.prompt, wide.width, wide.height) == ("image_extend", "more beach", 96, 48)
    assert wide.metadata["extend"]["canvas"] == {"padding": [0, 0, 32, 0]}

    both = rows["both.png"]
    assert both.prompt == "from the settings file"
    assert sorted(both.tags.values_list("name", flat=True)) == ["batch-1", "json"]
    assert len(stored_files()) == 12


def test_default_canvas_applies_to_images_without_a_mask(tmp_path):
    write_files(tmp_path, {"a.png": source_png(0), "b.png": source_png(1), "b_mask.png": mask_png()})
    defaults = ImportDefaults(task="image_extend", canvas=CanvasSpec(size=(128, 64)))
    rows = by_name(import_path(tmp_path, defaults))
    assert (rows["a.png"].width, rows["a.png"].height) == (128, 64)
    assert rows["a.png"].metadata["extend"]["source_box"] == {"left": 32, "top": 8, "width": W, "height": H}
    assert (rows["b.png"].width, rows["b.png"].height) == (W, H)  # its own mask wins
    assert "extend" not in rows["b.png"].metadata


def test_folder_with_bad_entries_lists_every_one_and_stores_none(tmp_path):
    write_files(tmp_path, {
        "good.png": source_png(0), "good_mask.png": mask_png(), "good.txt": "a kite",
        "noise.png": random_bytes(), "noise_mask.png": mask_png(), "noise.txt": "x",
        "cut.png": truncated_png(1), "cut_mask.png": mask_png(), "cut.txt": "x",
        "blank.png": b"", "blank_mask.png": mask_png(), "blank.txt": "x",
        "soft.png": source_png(2), "soft_mask.png": gradient_mask(), "soft.txt": "x",
        "dark.png": source_png(3), "dark_mask.png": solid_mask(0), "dark.txt": "x",
        "small.png": source_png(4), "small_mask.png": mask_png(32, 24, (2, 2, 8, 8)), "small.txt": "x",
        "mute.png": source_png(5), "mute_mask.png": mask_png(),
        "lonely_mask.png": mask_png(),
        "notes.md": "# not an input",
        "broken.png": source_png(6), "broken_mask.png": mask_png(), "broken.json": "{not json",
        "odd.png": source_png(7), "odd_mask.png": mask_png(), "odd.json": json.dumps({"colour": "red"}),
    })
    lines = all_problems(tmp_path, ImportDefaults(task="image_fill"))
    expected = {
        "noise.png": "not an image",
        "cut.png": "truncated or corrupt",
        "blank.png": "file is empty",
        "soft_mask.png": "not binary",
        "dark_mask.png": "mask is empty",
        "small_mask.png": "same size",
        "mute.png": "needs a prompt",
        "lonely_mask.png": "has no image lonely.png",
        "notes.md": "not an image, mask",
        "broken.json": "not valid JSON",
        "odd.json": "unknown keys ['colour']",
    }
    assert_lists_each_problem(lines, expected)

    with pytest.raises(ImportRejected):
        import_inputs(read(tmp_path, ImportDefaults(task="image_fill"))[0])
    assert_nothing_stored()


def test_folder_without_a_task_names_the_entry(tmp_path):
    write_files(tmp_path, {"a.png": source_png(), "a_mask.png": mask_png(), "a.txt": "x"})
    specs, problems = read(tmp_path)
    assert specs == []
    assert problem_lines(problems) == [
        "a.png: no task given (set 'task' for this input or a default task for the import)"
    ]


def test_second_mask_for_one_image_is_refused(tmp_path):
    write_files(tmp_path, {"a.png": source_png(), "a_mask.png": mask_png(), "a-mask.png": mask_png()})
    _, problems = read(tmp_path, ImportDefaults(task="image_fill", prompt="x"))
    assert any(line.startswith("a_mask.png: second mask for a") for line in problem_lines(problems)), problems


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    write_files(outside, {"secret.png": source_png(9)})
    folder = write_files(tmp_path / "inputs", {"a_mask.png": mask_png()})
    os.symlink(outside / "secret.png", folder / "a.png")
    lines = all_problems(folder, ImportDefaults(task="image_fill", prompt="x"))
    assert lines == ["a.png: file name carries a path outside its folder"]


def test_missing_path_and_unknown_kind_are_refused(tmp_path):
    assert all_problems(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'}: no such file or folder"]
    (tmp_path / "inputs.tar").write_bytes(b"x")
    assert all_problems(tmp_path / "inputs.tar") == ["inputs.tar: give a folder, a .jsonl manifest or a .zip archive"]


# --- JSONL manifests --------------------------------------------------------------------------


def test_manifest_with_relative_paths(tmp_path):
    write_files(tmp_path, {
        "images/a.png": source_png(0), "masks/a.png": mask_png(),
        "images/b.webp": source_png(1),
        "batch.jsonl": manifest(
            {"image": "images/a.png", "mask": "masks/a.png", "task": "image_fill", "prompt": "a kite",
             "tags": ["m1"], "metadata": {"id": "a"}},
            "",
            {"image": "images/b.webp", "task": "image_extend", "canvas": {"ratio": "1:1"}},
        ),
    })
    rows = by_name(import_path(tmp_path / "batch.jsonl", ImportDefaults(tags=["all"])))
    assert set(rows) == {"images/a.png", "images/b.webp"}
    a, b = rows["images/a.png"], rows["images/b.webp"]
    assert (a.prompt, a.metadata) == ("a kite", {"id": "a"})
    assert sorted(a.tags.values_list("name", flat=True)) == ["all", "m1"]
    assert (b.task.slug, b.width, b.height) == ("image_extend", 64, 64)
    assert b.metadata["extend"]["canvas"] == {"ratio": [1, 1]}


def test_manifest_with_bad_lines_lists_every_one(tmp_path):
    write_files(tmp_path, {
        "a.png": source_png(0), "a_mask.png": mask_png(),
        "b.png": source_png(1),
        "inputs.jsonl": manifest(
            {"image": "a.png", "mask": "a_mask.png", "task": "image_fill", "prompt": "ok"},  # line 1: good
            "{broken",  # 2
            '["a list"]',  # 3
            {"image": "a.png", "colour": "red"},  # 4
            {"mask": "a_mask.png"},  # 5
            {"image": "../x.png", "task": "image_fill", "prompt": "p"},  # 6
            {"image": "a.png", "mask": "/etc/a_mask.png", "task": "image_fill", "prompt": "p"},  # 7
            {"image": "missing.png", "mask": "a_mask.png", "task": "image_fill", "prompt": "p"},  # 8
            {"image": "b.png", "task": "image_fill", "prompt": "p", "canvas": {"padding": [-1, 0, 0, 0]}},  # 9
            {"image": "b.png", "task": "image_fill", "prompt": "p", "tags": "not-a-list"},  # 10
            {"image": "b.png", "task": "image_fill", "prompt": 5},  # 11
            {"image": "b.png", "mask": "a_mask.png", "task": "image_fill"},  # 12: no prompt
            {"image": "b.png", "task": "image_fill", "prompt": "p", "canvas": {"padding": [0, 0, 16, 0]}},  # 13
        ),
    })
    lines = all_problems(tmp_path / "inputs.jsonl")
    expected = [
        ("inputs.jsonl line 2: ", "not valid JSON"),
        ("inputs.jsonl line 3: ", "must be a JSON object"),
        ("inputs.jsonl line 4: ", "unknown keys ['colour']"),
        ("inputs.jsonl line 5: ", "'image'"),
        ("../x.png: ", "path outside its folder"),
        ("/etc/a_mask.png: ", "path outside its folder"),
        ("missing.png: ", "file not found"),
        ("inputs.jsonl line 9: ", "padding cannot be negative"),
        ("inputs.jsonl line 10: ", "'tags' must be a list"),
        ("inputs.jsonl line 11: ", "'prompt' must be a text"),
        ("inputs.jsonl line 12: ", "needs a prompt"),
        ("inputs.jsonl line 13: ", "takes a mask, not a canvas"),
    ]
    assert len(lines) == len(expected), lines
    for start, words in expected:
        assert any(line.startswith(start) and words in line for line in lines), (start, lines)
    assert_nothing_stored()


# --- zip archives -----------------------------------------------------------------------------


def test_zip_with_manifest(tmp_path):
    archive = tmp_path / "batch.zip"
    archive.write_bytes(zip_bytes({
        "manifest.jsonl": manifest(
            {"image": "pics/a.png", "mask": "pics/a_mask.png", "prompt": "a kite", "tags": ["zipped"]},
            {"image": "pics/b.png", "task": "image_extend", "canvas": {"size": [96, 64]}, "metadata": {"k": 1}},
        ),
        "pics/a.png": source_png(0), "pics/a_mask.png": mask_png(), "pics/b.png": source_png(1),
        "pics/unused.png": random_bytes(),  # not in the manifest: not read
    }))
    rows = by_name(import_path(archive, ImportDefaults(task="image_fill")))
    assert set(rows) == {"pics/a.png", "pics/b.png"}
    assert rows["pics/a.png"].prompt == "a kite"
    assert list(rows["pics/a.png"].tags.values_list("name", flat=True)) == ["zipped"]
    assert (rows["pics/b.png"].width, rows["pics/b.png"].height) == (96, 64)
    assert rows["pics/b.png"].metadata["k"] == 1


def test_zipped_folder_with_its_manifest_one_level_down(tmp_path):
    archive = tmp_path / "folder.zip"
    archive.write_bytes(zip_bytes({
        "batch/manifest.jsonl": manifest({"image": "a.png", "mask": "a_mask.png", "prompt": "a kite"}),
        "batch/a.png": source_png(0), "batch/a_mask.png": mask_png(),
    }))
    rows = by_name(import_path(archive, ImportDefaults(task="image_fill")))
    assert {name: row.prompt for name, row in rows.items()} == {"a.png": "a kite"}


def test_two_manifests_are_refused(tmp_path):
    archive = tmp_path / "two.zip"
    line = manifest({"image": "a.png", "mask": "a_mask.png", "prompt": "a kite"})
    archive.write_bytes(zip_bytes({"x/manifest.jsonl": line, "y/manifest.jsonl": line,
                                   "x/a.png": source_png(0), "x/a_mask.png": mask_png()}))
    lines = all_problems(archive, ImportDefaults(task="image_fill"))
    assert lines == ["x/manifest.jsonl: more than one manifest.jsonl; give one per import",
                     "y/manifest.jsonl: more than one manifest.jsonl; give one per import"]
    assert_nothing_stored()


def test_zip_of_pairs(tmp_path):
    archive = tmp_path / "pairs.zip"
    archive.write_bytes(zip_bytes({
        "set/a.png": source_png(0), "set/a_mask.png": mask_png(), "set/a.txt": "a kite",
        "set/b.png": source_png(1), "set/b_mask.png": mask_png(), "set/b.txt": "a boat",
        "__MACOSX/set/._a.png": b"\x00\x05\x16\x07",
    }))
    rows = by_name(import_path(archive, ImportDefaults(task="image_fill")))
    assert {name: row.prompt for name, row in rows.items()} == {"set/a.png": "a kite", "set/b.png": "a boat"}


def test_zip_with_bad_entries_among_good_ones_lists_every_one_and_stores_none(tmp_path):
    archive = tmp_path / "mixed.zip"
    archive.write_bytes(zip_bytes({
        "a.png": source_png(0), "a_mask.png": mask_png(), "a.txt": "a kite",
        "b.png": source_png(1), "b_mask.png": mask_png(), "b.txt": "a boat",
        "../evil.png": source_png(2),
        "/abs.png": source_png(3),
        "noise.png": random_bytes(), "noise_mask.png": mask_png(), "noise.txt": "x",
        "c.png": source_png(4), "c_mask.png": solid_mask(255), "c.txt": "x",
        "d.png": source_png(5), "d_mask.png": mask_png(), "d.txt": "",
    }))
    lines = all_problems(archive, ImportDefaults(task="image_fill"))
    expected = {
        "../evil.png": "path outside its folder",
        "/abs.png": "path outside its folder",
        "noise.png": "not an image",
        "c_mask.png": "covers the whole image",
        "d.png": "needs a prompt",
    }
    assert_lists_each_problem(lines, expected)
    # Importing what could be read is refused as well: all or nothing.
    with pytest.raises(ImportRejected):
        import_inputs(read(archive, ImportDefaults(task="image_fill"))[0])
    assert_nothing_stored()


def test_zip_with_manifest_naming_paths_outside_is_refused(tmp_path):
    archive = tmp_path / "batch.zip"
    archive.write_bytes(zip_bytes({
        "manifest.jsonl": manifest(
            {"image": "a.png", "mask": "a_mask.png", "prompt": "ok"},
            {"image": "../x.png", "mask": "a_mask.png", "prompt": "p"},
            {"image": "a.png", "mask": "nope_mask.png", "prompt": "p"},
        ),
        "a.png": source_png(0), "a_mask.png": mask_png(),
    }))
    lines = all_problems(archive, ImportDefaults(task="image_fill"))
    assert len(lines) == 2, lines
    assert any(line.startswith("../x.png: ") and "path outside its folder" in line for line in lines)
    assert any(line.startswith("nope_mask.png: ") and "not found in batch.zip" in line for line in lines)
    assert_nothing_stored()


def test_file_that_is_not_a_zip_is_refused(tmp_path):
    archive = tmp_path / "fake.zip"
    archive.write_bytes(source_png())
    lines = all_problems(archive)
    assert len(lines) == 1 and lines[0].startswith("fake.zip: not a readable zip archive")


def test_zip_over_the_unpacked_size_limit_is_refused(tmp_path):
    archive = tmp_path / "big.zip"
    archive.write_bytes(zip_bytes({"a.png": source_png(0), "a_mask.png": mask_png(), "a.txt": "x"}))
    limits = ZipLimits(entry_bytes=10**9, total_bytes=1000, ratio=100)
    specs, problems = specs_from_path(archive, ImportDefaults(task="image_fill"), limits)
    lines = problem_lines(problems)
    assert specs == [] and len(lines) == 1
    assert lines[0].startswith("big.zip: archive unpacks to") and "over the limit of 1,000 bytes" in lines[0]
    assert "ONEREWARD_MAX_ZIP_UNCOMPRESSED_BYTES" in lines[0]


def test_empty_zip_has_no_inputs(tmp_path):
    archive = tmp_path / "empty.zip"
    archive.write_bytes(zip_bytes({}))
    specs, problems = read(archive, ImportDefaults(task="image_fill"))
    assert (specs, problems) == ([], [])
    with pytest.raises(ImportRejected) as info:
        import_inputs(specs)
    assert problem_lines(info.value.problems) == ["(import): no inputs found"]
    assert_nothing_stored()
