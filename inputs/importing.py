"""Turning input specifications into stored inputs: all of them, or none and every problem.

Readers (folder, manifest, zip: `core.sources`), the admin form and the API serializer all build
InputSpec objects and hand them to `import_inputs`, which is the one place the rules are applied.
"""
import json
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from .core import taxonomy
from .core.images import (
    CanvasSpec,
    InputProblem,
    binarise_mask,
    build_canvas,
    check_entry_name,
    check_min_side,
    content_hash,
    encode_png,
    encode_thumbnail,
    mask_coverage,
    open_image,
    to_rgb,
)
from .core.sources import InputSpec, ZipLimits
from .models import Input, InputKind, Tag, Task
from .storage import delete_files, save_file

MAX_TAG_LENGTH = 64
NO_INPUTS = InputProblem("(import)", "no inputs found")


class ImportRejected(Exception):
    """Nothing was stored; `problems` lists every bad entry."""

    def __init__(self, problems: list[InputProblem]):
        self.problems = problems
        lines = "\n".join(f"  {p.entry}: {p.problem}" for p in problems)
        super().__init__(f"{len(problems)} problem(s), nothing was imported:\n{lines}")


@dataclass
class PreparedInput:
    spec: InputSpec
    task: Task
    prompt: str
    image: object  # PIL RGB image, the canvas to edit
    mask: object  # PIL L image, {0, 255}
    content_hash: str
    metadata: dict


def storage_dir(digest: str) -> str:
    """Where an input's files live. The random suffix keeps a failed or concurrent import of the
    same content from touching another import's files."""
    return f"inputs/{digest[:2]}/{digest}-{uuid.uuid4().hex[:8]}"


def zip_limits() -> ZipLimits:
    """What one zip may unpack to, from the settings: every entry point that opens a zip uses this."""
    return ZipLimits(
        entry_bytes=settings.ONEREWARD_MAX_ZIP_ENTRY_BYTES,
        total_bytes=settings.ONEREWARD_MAX_ZIP_UNCOMPRESSED_BYTES,
        ratio=settings.ONEREWARD_MAX_ZIP_RATIO,
    )


def prompt_problem(prompt: str) -> str | None:
    """Why a prompt (an input's, or a default for an import) is refused, or None."""
    try:
        taxonomy.check_prompt_length(prompt, settings.ONEREWARD_MAX_PROMPT_CHARS)
    except taxonomy.PromptTooLong as exc:
        return str(exc)
    return None


def prepare(spec: InputSpec, tasks: dict[str, Task]) -> PreparedInput:
    """Decode and check one spec; raises InputProblem."""
    max_pixels = settings.ONEREWARD_MAX_IMAGE_PIXELS
    check_entry_name(spec.source_name)
    task = tasks.get(spec.task)
    if task is None:
        known = ", ".join(sorted(tasks)) or "none defined"
        raise InputProblem(spec.entry, f"unknown task {spec.task!r} (known tasks: {known})")
    if not isinstance(spec.metadata, dict):
        raise InputProblem(spec.entry, "metadata must be a JSON object")
    too_long = prompt_problem(spec.prompt)
    if too_long:
        raise InputProblem(spec.entry, too_long)
    if "\x00" in spec.prompt or any("\x00" in str(t) for t in spec.tags) or "\\u0000" in json.dumps(spec.metadata):
        raise InputProblem(spec.entry, "prompt, tags or metadata contain a NUL character")
    try:
        prompt = taxonomy.input_prompt(task.prompt_mode, spec.prompt)
    except taxonomy.PromptMissing:
        raise InputProblem(spec.entry, f"task {task.slug!r} needs a prompt and none was given") from None
    for tag in spec.tags:
        if not isinstance(tag, str) or not tag.strip() or len(tag.strip()) > MAX_TAG_LENGTH:
            raise InputProblem(
                spec.entry, f"tag {tag!r} must be a non-empty text of at most {MAX_TAG_LENGTH} characters"
            )

    source = to_rgb(open_image(spec.source, spec.source_name, max_pixels))
    # A mask is held to the minimum by having to match its image's size.
    check_min_side(source, spec.source_name, settings.ONEREWARD_MIN_IMAGE_SIDE)
    metadata = dict(spec.metadata)
    if spec.canvas is not None:
        if task.input_kind != InputKind.CANVAS:
            raise InputProblem(spec.entry, f"task {task.slug!r} takes a mask, not a canvas to extend")
        if spec.mask is not None:
            raise InputProblem(spec.entry, "give either a mask or a canvas to extend, not both")
        image, mask, placement = build_canvas(source, spec.canvas, spec.source_name, max_pixels)
        metadata["extend"] = {
            "canvas": spec.canvas.as_dict(),
            "source_box": placement,
            "source_size": list(source.size),
        }
    else:
        if spec.mask is None:
            hint = " or a canvas to extend (padding, size or ratio)" if task.input_kind == InputKind.CANVAS else ""
            raise InputProblem(spec.entry, f"no mask given{hint}")
        mask_name = spec.mask_name or "mask"
        check_entry_name(mask_name)
        mask_image = open_image(spec.mask, mask_name, max_pixels)
        if mask_image.size != source.size:
            raise InputProblem(
                mask_name,
                f"mask is {mask_image.width}x{mask_image.height} but its image {spec.source_name} is "
                f"{source.width}x{source.height}; they must be the same size",
            )
        image, mask = source, binarise_mask(mask_image, mask_name)
    digest = content_hash(task.slug, prompt, image, mask)
    return PreparedInput(spec, task, prompt, image, mask, digest, metadata)


def find_problems(
    specs: list[InputSpec], skip_existing: bool = False
) -> tuple[list[PreparedInput], list[InputProblem]]:
    """Check every spec (never stopping at the first problem), duplicates included. With
    skip_existing, inputs already stored are left out instead of reported."""
    tasks = {task.slug: task for task in Task.objects.filter(active=True)}
    prepared, problems = [], []
    for spec in specs:
        try:
            prepared.append(prepare(spec, tasks))
        except InputProblem as problem:
            problems.append(problem)
    first_seen: dict[str, str] = {}
    for item in prepared:
        if item.content_hash in first_seen:
            problems.append(
                InputProblem(item.spec.entry, f"duplicate of {first_seen[item.content_hash]} in this import")
            )
        else:
            first_seen[item.content_hash] = item.spec.entry
    existing = dict(Input.objects.filter(content_hash__in=list(first_seen)).values_list("content_hash", "pk"))
    if skip_existing:
        prepared = [item for item in prepared if item.content_hash not in existing]
        existing = {}
    for item in prepared:
        if item.content_hash in existing and first_seen.get(item.content_hash) == item.spec.entry:
            problems.append(InputProblem(item.spec.entry, f"already imported as input #{existing[item.content_hash]}"))
    return prepared, problems


def import_inputs(specs: list[InputSpec], user=None, on_progress=None, skip_existing: bool = False) -> list[Input]:
    """Store every spec as an Input, or raise ImportRejected and store nothing. With skip_existing,
    inputs already stored are not imported again (re-running an import is then harmless).

    Files are written first, rows after in one transaction; if the rows fail, the files written by
    this call are removed again.
    """
    if not specs:
        raise ImportRejected([NO_INPUTS])
    prepared, problems = find_problems(specs, skip_existing=skip_existing)
    if problems:
        raise ImportRejected(problems)
    return store_inputs(prepared, user=user, on_progress=on_progress, skip_existing=skip_existing)


def store_inputs(prepared: list[PreparedInput], user=None, on_progress=None, skip_existing: bool = False
                 ) -> list[Input]:
    """Store inputs that find_problems found no problem with. Raises ImportRejected, storing
    nothing, when another import stored the same content in the meantime."""
    written: list[str] = []
    try:
        staged = []
        for index, item in enumerate(prepared):
            folder = storage_dir(item.content_hash)
            names = {}
            for field_name, filename, payload in (
                ("source", "source.png", encode_png(item.image)),
                ("mask", "mask.png", encode_png(item.mask)),
                ("thumbnail", "thumbnail.jpg", encode_thumbnail(item.image)),
            ):
                saved = save_file(f"{folder}/{filename}", ContentFile(payload))
                written.append(saved)
                names[field_name] = saved
            staged.append((item, names))
            if on_progress:
                on_progress(index + 1, len(prepared))
        with transaction.atomic():
            created = []
            for item, names in staged:
                row = Input.objects.create(
                    task=item.task,
                    prompt=item.prompt,
                    width=item.image.width,
                    height=item.image.height,
                    mask_coverage=mask_coverage(item.mask),
                    content_hash=item.content_hash,
                    original_name=item.spec.source_name[:255],
                    metadata=item.metadata,
                    created_by=user if user is not None and user.is_authenticated else None,
                    **names,
                )
                tags = [Tag.objects.get_or_create(name=name.strip())[0] for name in dict.fromkeys(item.spec.tags)]
                if tags:
                    row.tags.add(*tags)
                created.append(row)
        return created
    except IntegrityError:
        delete_files(written)
        # Another import stored the same content between our check and our write.
        _, problems = find_problems([item.spec for item in prepared], skip_existing=skip_existing)
        raise ImportRejected(problems or [InputProblem("(import)", "an input was imported concurrently")]) from None
    except BaseException:
        delete_files(written)
        raise


def spec_from_upload(*, task: str, source, mask=None, prompt: str = "", canvas: dict | None = None,
                     tags: list[str] | None = None, metadata: dict | None = None) -> InputSpec:
    """One input from uploaded files (admin form, API). Raises InputProblem for a bad canvas."""
    source_name = getattr(source, "name", "") or "source"
    canvas_spec = CanvasSpec.parse(canvas, source_name) if canvas else None
    return InputSpec(
        entry=source_name,
        task=task,
        source=_read_upload(source),
        source_name=source_name,
        mask=_read_upload(mask) if mask is not None else None,
        mask_name=(getattr(mask, "name", "") or "mask") if mask is not None else None,
        prompt=prompt or "",
        canvas=canvas_spec,
        tags=list(tags or []),
        metadata={} if metadata is None else metadata,  # prepare() refuses what is not an object
    )


def _read_upload(upload) -> bytes:
    upload.seek(0)
    return upload.read()


def parse_tags(text: str) -> list[str]:
    """"cats, outdoor ,night" -> ["cats", "outdoor", "night"]."""
    return [tag.strip() for tag in (text or "").split(",") if tag.strip()]
