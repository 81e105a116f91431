"""Readers that turn a folder, a JSONL manifest or a zip into InputSpec objects.

A folder or zip holds either a `manifest.jsonl` or image/mask pairs named by convention:
    photo.jpg          the source image
    photo_mask.png     its mask (white = generate)
    photo.txt          optional: the prompt
    photo.json         optional: {"task", "prompt", "tags", "metadata", "canvas"} for this input
An image of an extend task may come without a mask when a canvas (padding, size or ratio) is given.

Manifest lines: {"image": "a.png", "mask": "a_mask.png", "task": "image_fill", "prompt": "...",
"tags": [...], "metadata": {...}, "canvas": {"padding": [l, t, r, b]}}; paths relative to the
manifest, never absolute or climbing out with "..".
"""
import io
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .images import CanvasSpec, InputProblem, check_entry_name

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
MASK_SUFFIXES = ("_mask", ".mask", "-mask")


@dataclass
class InputSpec:
    """One input as a reader found it. `entry` names it in error messages."""

    entry: str
    task: str
    source: bytes
    source_name: str
    mask: bytes | None = None
    mask_name: str | None = None
    prompt: str = ""
    canvas: CanvasSpec | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)


MANIFEST_NAME = "manifest.jsonl"
MANIFEST_KEYS = {"image", "mask", "task", "prompt", "tags", "metadata", "canvas"}
SIDECAR_KEYS = MANIFEST_KEYS - {"image", "mask"}
# Files that archivers and desktops add; never inputs.
IGNORED_PARTS = {"__MACOSX", ".DS_Store", "Thumbs.db"}


@dataclass
class ImportDefaults:
    """What applies to every input that does not say otherwise (CLI options, admin form)."""

    task: str | None = None
    prompt: str = ""
    tags: list[str] = field(default_factory=list)
    canvas: CanvasSpec | None = None


class FileTree:
    """Relative POSIX names -> bytes, for a folder or an archive."""

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError


class FolderTree(FileTree):
    def __init__(self, root: Path):
        self.root = Path(root)

    def names(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def read(self, name: str) -> bytes:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise InputProblem(name, "file name carries a path outside its folder")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise InputProblem(name, "file not found") from None
        except OSError as exc:
            raise InputProblem(name, f"cannot be read: {exc.strerror}") from None


@dataclass(frozen=True)
class ZipLimits:
    """What one zip may unpack to, in bytes actually unpacked. The sizes an archive declares only let
    a refusal come before anything is unpacked: a forged header can understate them.

    entry_bytes: the most one entry may unpack to. total_bytes: the most all the reads of one archive
    may unpack to together (an entry a manifest names twice counts twice: both copies are held).
    ratio: the most unpacked bytes per compressed byte, for entries past RATIO_FREE_BYTES.
    """

    entry_bytes: int
    total_bytes: int
    ratio: float


CHUNK_BYTES = 1024 * 1024
# Entries that unpack to less than this pass whatever their ratio: a few MiB is harmless, and text
# or an uncompressed (BMP, TIFF) mask of one colour compresses far beyond any photograph.
RATIO_FREE_BYTES = 8 * 1024 * 1024
# Python inflates deflate to at most the size asked for, so reading in chunks bounds the memory; its
# bzip2 and LZMA readers unpack a whole compressed read at once (a 4 KiB read of a crafted entry can
# give gigabytes before any count is made), so those methods are refused.
STREAMED_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
METHOD_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 9: "deflate64"}


def _size(count: int) -> str:
    if count < 1024 * 1024:
        return f"{count:,} bytes"
    if count < 1024**3:
        return f"{count / 1024**2:,.1f} MiB"
    return f"{count / 1024**3:,.2f} GiB"


class ZipTree(FileTree):
    """A zip archive. Entry names are checked before anything is read; an entry is unpacked in
    chunks, and refused as soon as the bytes it gave break a limit of `limits`."""

    def __init__(self, archive, name: str, limits: ZipLimits):
        self.label = name
        self.limits = limits
        self.unpacked = 0  # bytes unpacked so far by every read of this archive
        try:
            self.zip = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputProblem(name, f"not a readable zip archive: {exc}") from None
        self.infos = {info.filename: info for info in self.zip.infolist() if not info.is_dir()}
        declared = sum(info.file_size for info in self.infos.values())
        if declared > limits.total_bytes:
            # Reading the entries to list their problems would unpack up to the limit for nothing.
            raise InputProblem(name, f"archive unpacks to {_size(declared)} (as its entries declare), over the "
                                     f"limit of {_size(limits.total_bytes)} per archive "
                                     "(ONEREWARD_MAX_ZIP_UNCOMPRESSED_BYTES)")
        self.problems: list[InputProblem] = []
        for entry in self.infos:
            try:
                check_entry_name(entry)
            except InputProblem as problem:
                self.problems.append(problem)
        if any(info.flag_bits & 0x1 for info in self.infos.values()):
            self.problems.append(InputProblem(name, "archive is encrypted; give an unencrypted zip"))

    def names(self) -> list[str]:
        bad = {p.entry for p in self.problems}
        return sorted(n for n in self.infos if n not in bad)

    def read(self, name: str) -> bytes:
        info = self.infos.get(name)
        if info is None:
            raise InputProblem(name, f"not found in {self.label}")
        if info.compress_type not in STREAMED_METHODS:
            method = METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
            raise InputProblem(name, f"entry is compressed with {method}; give a zip whose entries are deflated "
                                     "(what zip tools do by default) or stored")
        self._check(name, info, info.file_size, declared=True)
        # A BytesIO hands its buffer over without a copy: the entry is held once, not twice as by
        # zipfile's read() or a join of the chunks.
        data, size = io.BytesIO(), 0
        try:
            with self.zip.open(info) as entry:
                while chunk := entry.read(CHUNK_BYTES):
                    size += len(chunk)
                    self.unpacked += len(chunk)
                    self._check(name, info, size, declared=False)
                    data.write(chunk)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, zlib.error) as exc:
            # zipfile stops at the declared size, so a header that understates it fails the CRC.
            why = " (the entry is damaged, or its header understates its size)" if "CRC" in str(exc) else ""
            raise InputProblem(name, f"cannot be unpacked: {exc}{why}") from None
        return data.getvalue()

    def _check(self, name: str, info: zipfile.ZipInfo, size: int, declared: bool) -> None:
        """Refuse an entry whose unpacked `size` (declared, before reading; or given so far) is over a
        limit. The archive's total counts what earlier reads unpacked, plus this entry."""
        limits = self.limits
        unpacks = "declares it unpacks to" if declared else "unpacks to more than"
        if size > limits.entry_bytes:
            over = f"declares it unpacks to {_size(size)}, over" if declared else "unpacks to more than"
            raise InputProblem(name, f"entry {over} the limit of {_size(limits.entry_bytes)} per entry "
                                     "(ONEREWARD_MAX_ZIP_ENTRY_BYTES)")
        if self.unpacked + (size if declared else 0) > limits.total_bytes:
            raise InputProblem(name, f"unpacking this entry takes {self.label} past {_size(limits.total_bytes)} "
                                     "unpacked in all, the limit per archive (ONEREWARD_MAX_ZIP_UNCOMPRESSED_BYTES)")
        compressed = max(info.compress_size, 1)
        if size > RATIO_FREE_BYTES and size > limits.ratio * compressed:
            raise InputProblem(name, f"entry {unpacks} {_size(size)} from {_size(info.compress_size)} compressed "
                                     f"({size / compressed:,.0f} times as much), over the limit of {limits.ratio:g} "
                                     "times (ONEREWARD_MAX_ZIP_RATIO): the mark of a zip bomb")


class SubTree(FileTree):
    """The part of a tree under one folder (a zipped folder holding its manifest)."""

    def __init__(self, tree: FileTree, prefix: str):
        self.tree, self.prefix = tree, prefix

    def names(self) -> list[str]:
        return [n[len(self.prefix):] for n in self.tree.names() if n.startswith(self.prefix)]

    def read(self, name: str) -> bytes:
        return self.tree.read(self.prefix + name)


def _ignored(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(part in IGNORED_PARTS or part.startswith("._") for part in parts)


def specs_from_tree(tree: FileTree, defaults: ImportDefaults) -> tuple[list[InputSpec], list[InputProblem]]:
    """Read every input of a folder or archive. Problems are collected, never raised."""
    problems = list(getattr(tree, "problems", []))
    names = [n for n in tree.names() if not _ignored(n)]
    manifests = [n for n in names if PurePosixPath(n).name == MANIFEST_NAME]
    if len(manifests) > 1:
        return [], problems + [InputProblem(m, "more than one manifest.jsonl; give one per import") for m in manifests]
    if manifests:
        # Paths in a manifest are relative to its folder (a zipped folder puts it one level down).
        manifest = manifests[0]
        prefix = manifest[: -len(MANIFEST_NAME)]
        base = SubTree(tree, prefix) if prefix else tree
        try:
            text = tree.read(manifest).decode("utf-8", "replace")
        except InputProblem as problem:
            return [], problems + [problem]
        specs, more = specs_from_manifest_text(text, base, defaults, label=manifest)
        return specs, problems + more
    specs, more = _specs_from_pairs(names, tree, defaults)
    return specs, problems + more


def specs_from_manifest_file(path: Path, defaults: ImportDefaults) -> tuple[list[InputSpec], list[InputProblem]]:
    tree = FolderTree(Path(path).parent)
    return specs_from_manifest_text(
        Path(path).read_text(encoding="utf-8", errors="replace"), tree, defaults, label=Path(path).name
    )


def specs_from_manifest_text(text: str, tree: FileTree, defaults: ImportDefaults, label: str = MANIFEST_NAME):
    specs, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        entry = f"{label} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(InputProblem(entry, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        try:
            if not isinstance(record, dict):
                raise InputProblem(entry, "each line must be a JSON object")
            unknown = set(record) - MANIFEST_KEYS
            if unknown:
                raise InputProblem(entry, f"unknown keys {sorted(unknown)}; allowed: {sorted(MANIFEST_KEYS)}")
            image_name = record.get("image")
            if not isinstance(image_name, str) or not image_name:
                raise InputProblem(entry, "'image' (the source file, relative to the manifest) is required")
            check_entry_name(image_name)
            mask_name = record.get("mask")
            if mask_name is not None:
                if not isinstance(mask_name, str):
                    raise InputProblem(entry, "'mask' must be a file name")
                check_entry_name(mask_name)
            specs.append(_spec(entry, record, defaults, tree, image_name, mask_name))
        except InputProblem as problem:
            problems.append(problem)
    return specs, problems


def _is_mask(stem: str) -> bool:
    return stem.lower().endswith(MASK_SUFFIXES)


def _specs_from_pairs(names: list[str], tree: FileTree, defaults: ImportDefaults):
    specs, problems = [], []
    by_stem: dict[str, dict[str, str]] = {}
    for name in names:
        path = PurePosixPath(name)
        suffix = path.suffix.lower()
        stem = str(path.with_suffix(""))
        if suffix in IMAGE_SUFFIXES:
            if _is_mask(path.stem):
                base = stem[: -len("_mask")]
                slot = by_stem.setdefault(base, {})
                if "mask" in slot:
                    problems.append(InputProblem(name, f"second mask for {base} (first: {slot['mask']})"))
                slot["mask"] = name
            else:
                slot = by_stem.setdefault(stem, {})
                if "image" in slot:
                    problems.append(InputProblem(name, f"second image named {stem} (first: {slot['image']})"))
                slot["image"] = name
        elif suffix in {".txt", ".json"}:
            by_stem.setdefault(stem, {})[suffix[1:]] = name
        else:
            problems.append(
                InputProblem(name, "not an image, mask (NAME_mask.png), prompt (.txt) or settings (.json) file")
            )
    for stem, slot in sorted(by_stem.items()):
        if "image" not in slot:
            orphan = slot.get("mask") or slot.get("txt") or slot.get("json")
            problems.append(InputProblem(orphan, f"has no image {stem}.png/.jpg beside it"))
            continue
        try:
            record = {}
            if "json" in slot:
                try:
                    record = json.loads(tree.read(slot["json"]))
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise InputProblem(slot["json"], f"not valid JSON ({exc})") from None
                if not isinstance(record, dict):
                    raise InputProblem(slot["json"], "must hold a JSON object")
                unknown = set(record) - SIDECAR_KEYS
                if unknown:
                    raise InputProblem(
                        slot["json"], f"unknown keys {sorted(unknown)}; allowed: {sorted(SIDECAR_KEYS)}"
                    )
            if "txt" in slot and "prompt" not in record:
                record["prompt"] = tree.read(slot["txt"]).decode("utf-8", "replace").strip()
            specs.append(_spec(slot["image"], record, defaults, tree, slot["image"], slot.get("mask")))
        except InputProblem as problem:
            problems.append(problem)
    return specs, problems


def _spec(
    entry: str, record: dict, defaults: ImportDefaults, tree: FileTree, image_name: str, mask_name: str | None
) -> InputSpec:
    task = record.get("task") or defaults.task
    if not task:
        raise InputProblem(entry, "no task given (set 'task' for this input or a default task for the import)")
    tags = record.get("tags", [])
    if not isinstance(tags, list):
        raise InputProblem(entry, "'tags' must be a list of texts")
    canvas = CanvasSpec.parse(record["canvas"], entry) if record.get("canvas") else None
    if canvas is None and mask_name is None:
        canvas = defaults.canvas
    prompt = record.get("prompt", defaults.prompt)
    if not isinstance(prompt, str):
        raise InputProblem(entry, "'prompt' must be a text")
    return InputSpec(
        entry=entry,
        task=str(task),
        source=tree.read(image_name),
        source_name=image_name,
        mask=tree.read(mask_name) if mask_name else None,
        mask_name=mask_name,
        prompt=prompt,
        canvas=canvas,
        tags=list(dict.fromkeys([*defaults.tags, *tags])),
        metadata=record.get("metadata") or {},
    )


def specs_from_path(path: Path, defaults: ImportDefaults, zip_limits: ZipLimits):
    """A folder, a .jsonl manifest or a .zip (unpacked within `zip_limits`), by what PATH is."""
    path = Path(path)
    if path.is_dir():
        return specs_from_tree(FolderTree(path), defaults)
    if not path.exists():
        return [], [InputProblem(str(path), "no such file or folder")]
    if path.suffix.lower() == ".jsonl":
        return specs_from_manifest_file(path, defaults)
    if path.suffix.lower() == ".zip":
        try:
            tree = ZipTree(path, path.name, zip_limits)
        except InputProblem as problem:
            return [], [problem]
        return specs_from_tree(tree, defaults)
    return [], [InputProblem(path.name, "give a folder, a .jsonl manifest or a .zip archive")]
