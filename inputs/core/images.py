"""Decoding and checking the pixels of an input: source image, mask, extend canvas, content hash.

Plain Pillow + NumPy, no Django: the same rules serve the admin, the API and the command line.
Every refusal raises InputProblem with a sentence that names the file and what is wrong.
"""
import hashlib
import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Mask pixels strictly between these values are "grey". A few grey pixels are the anti-aliased edge
# of a drawn mask and are binarised at 128; more than GREY_SHARE_LIMIT means a soft or wrong mask,
# which is refused rather than guessed at.
GREY_LOW, GREY_HIGH = 16, 239
GREY_SHARE_LIMIT = 0.01
BINARISE_AT = 128
FLUX_MULTIPLE = 16
CANVAS_FILL = (127, 127, 127)  # the new border before generation: neutral grey
THUMBNAIL_SIZE = 384


class InputProblem(Exception):
    """One bad entry: `entry` names the file (or manifest line), `problem` says what is wrong."""

    def __init__(self, entry: str, problem: str):
        super().__init__(f"{entry}: {problem}")
        self.entry = entry
        self.problem = problem

    def as_dict(self) -> dict:
        return {"entry": self.entry, "problem": self.problem}


def check_entry_name(name: str) -> None:
    """Refuse names that are absolute or climb out of their folder or archive."""
    if not name or name.strip() != name:
        raise InputProblem(name or "(no name)", "file name is empty or has leading/trailing spaces")
    if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in name.split("/"):
        raise InputProblem(name, "file name carries a path outside its folder (absolute, '..' or '\\'); "
                                 "give a plain relative name")
    if "\x00" in name:
        raise InputProblem(name, "file name contains a NUL character")


def _pixels(count: int) -> str:
    return f"{count:,} pixels ({count / 1e6:.1f} MP)"


# The formats an input may come in; anything else Pillow could parse is refused.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")

def allow_pixels(limit: int) -> None:
    """Raise Pillow's process-wide decompression-bomb limit to `limit` pixels when it is lower, so
    images the platform accepts are not refused by Pillow first. Called once at start-up; the
    guard stays on (never None) and is never lowered, since other code in the process relies on it."""
    if limit > (Image.MAX_IMAGE_PIXELS or 0):
        Image.MAX_IMAGE_PIXELS = limit


def _over_limit(name: str, width: int, height: int, max_pixels: int) -> InputProblem:
    return InputProblem(
        name,
        f"image is {width}x{height} = {_pixels(width * height)}, over the limit of {_pixels(max_pixels)} "
        "(ONEREWARD_MAX_IMAGE_PIXELS); refused before decoding (decompression bomb guard)",
    )


def check_min_side(image: Image.Image, name: str, min_side: int) -> None:
    """Refuse an image narrower or lower than `min_side` pixels: too little for the generator to
    work on, and for annotators to judge."""
    if min(image.size) < min_side:
        raise InputProblem(
            name, f"image is {image.width}x{image.height}, under the minimum of {min_side} pixels a side "
                  "(ONEREWARD_MIN_IMAGE_SIDE)"
        )


def open_image(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Decode image bytes fully, refusing bombs (over `max_pixels` pixels, read from the header
    before any pixel is decoded), truncation and unreadable data; EXIF rotation applied."""
    if not data:
        raise InputProblem(name, "file is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        width, height = image.size
        if width * height > max_pixels:
            raise _over_limit(name, width, height, max_pixels)
        image.load()
    except InputProblem:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow's own guard (twice its limit) fired before the size could be read back.
        raise InputProblem(name, f"image is over the limit of {_pixels(max_pixels)} (ONEREWARD_MAX_IMAGE_PIXELS); "
                                 f"refused before decoding (decompression bomb guard: {exc})") from None
    except UnidentifiedImageError:
        raise InputProblem(name, f"not an image (not one of {', '.join(ACCEPTED_FORMATS)})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputProblem(name, f"image is truncated or corrupt: {exc}") from None
    if width == 0 or height == 0:
        raise InputProblem(name, "image has no pixels")
    return ImageOps.exif_transpose(_to_8_bit(image))


def _to_8_bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit greyscale scaled to 8 bits (Pillow's convert would clip, not scale)."""
    if not image.mode.startswith("I") and image.mode != "F":
        return image
    values = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16") or values.max(initial=0) > 255:
        values = values / 257.0
    converted = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    converted.info = {k: v for k, v in image.info.items() if k != "transparency"}
    if "transparency" in image.info:
        # Keep a colour-key transparency meaningful after scaling.
        key = np.asarray(image) == image.info["transparency"]
        alpha = Image.fromarray(np.where(key, 0, 255).astype(np.uint8), mode="L")
        converted = Image.merge("LA", (converted, alpha))
    return converted


def _has_transparency(image: Image.Image) -> bool:
    """An alpha channel or a colour key (PNG tRNS, GIF), whatever the mode."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels; transparent areas composited on white (what a viewer shows)."""
    if _has_transparency(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def binarise_mask(image: Image.Image, name: str) -> Image.Image:
    """Mask as mode "L" with values {0, 255}; refuses transparent, soft, empty or full masks."""
    if _has_transparency(image):
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
        if (alpha < 255).any():
            raise InputProblem(
                name, "mask has transparent pixels; give an opaque mask, white = generate, black = keep"
            )
    grey = np.asarray(image.convert("L"))
    grey_share = float(((grey > GREY_LOW) & (grey < GREY_HIGH)).mean())
    if grey_share > GREY_SHARE_LIMIT:
        raise InputProblem(
            name,
            f"mask is not binary: {grey_share:.1%} of its pixels are grey ({GREY_LOW + 1}-{GREY_HIGH - 1}); "
            f"up to {GREY_SHARE_LIMIT:.0%} (anti-aliased edges) are binarised at {BINARISE_AT}, more is refused",
        )
    binary = np.where(grey >= BINARISE_AT, 255, 0).astype(np.uint8)
    white = int((binary == 255).sum())
    if white == 0:
        raise InputProblem(name, "mask is empty (no white pixel): there is nothing to generate")
    if white == binary.size:
        raise InputProblem(name, "mask covers the whole image: nothing of the source would be kept")
    return Image.fromarray(binary, mode="L")


@dataclass(frozen=True)
class CanvasSpec:
    """How to extend a source: exactly one of padding, size or ratio.

    padding: (left, top, right, bottom) pixels added; size: (width, height) of the canvas, the source
    centred; ratio: (w, h) aspect of the smallest canvas that holds the source, centred. The canvas
    is then grown to multiples of 16 (FLUX), the extra split between opposite sides.
    """

    padding: tuple[int, int, int, int] | None = None
    size: tuple[int, int] | None = None
    ratio: tuple[int, int] | None = None

    @classmethod
    def parse(cls, raw: dict, entry: str) -> "CanvasSpec":
        """From {"padding": [l, t, r, b]} | {"size": [w, h]} | {"ratio": "16:9"} (JSON, forms, CLI)."""
        if not isinstance(raw, dict):
            raise InputProblem(entry, "canvas must be an object with one of padding, size or ratio")
        keys = [k for k in ("padding", "size", "ratio") if raw.get(k) not in (None, "", [])]
        unknown = set(raw) - {"padding", "size", "ratio"}
        if unknown:
            raise InputProblem(entry, f"canvas has unknown keys {sorted(unknown)}; use padding, size or ratio")
        if len(keys) != 1:
            raise InputProblem(entry, "canvas needs exactly one of padding, size or ratio")
        key, value = keys[0], raw[keys[0]]
        try:
            if key == "padding":
                values = _int_list(value, 4)
                if any(v < 0 for v in values):
                    raise ValueError("padding cannot be negative")
                return cls(padding=tuple(values))
            if key == "size":
                values = _int_list(value, 2, separators="x,")
                if any(v <= 0 for v in values):
                    raise ValueError("size must be positive")
                return cls(size=tuple(values))
            values = _int_list(value, 2, separators=":/,x")
            if any(v <= 0 for v in values):
                raise ValueError("ratio terms must be positive")
            return cls(ratio=tuple(values))
        except ValueError as exc:
            raise InputProblem(entry, f"canvas {key} {value!r} is invalid: {exc}") from None

    def as_dict(self) -> dict:
        for key in ("padding", "size", "ratio"):
            value = getattr(self, key)
            if value is not None:
                return {key: list(value)}
        return {}


def _int_list(value, count: int, separators: str = ",") -> list[int]:
    if isinstance(value, str):
        parts = re.split("[" + re.escape(separators) + r"\s]+", value.strip())
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise ValueError(f"expected {count} numbers")
    if len(parts) != count:
        raise ValueError(f"expected {count} numbers, got {len(parts)}")
    try:
        return [int(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"expected {count} whole numbers") from None


def _round_up(value: int, multiple: int = FLUX_MULTIPLE) -> int:
    return -(-value // multiple) * multiple


def build_canvas(source: Image.Image, spec: CanvasSpec, name: str, max_pixels: int
                 ) -> tuple[Image.Image, Image.Image, dict]:
    """Place an RGB source on a larger canvas for outpainting.

    Returns (canvas RGB, mask L with 255 on the new border, placement {left, top, width, height}).
    Canvas width and height are multiples of 16.
    """
    w, h = source.size
    if spec.padding is not None:
        left, top, right, bottom = spec.padding
    else:
        if spec.size is not None:
            target_w, target_h = spec.size
            if target_w < w or target_h < h:
                raise InputProblem(name, f"canvas size {target_w}x{target_h} is smaller than the source {w}x{h}")
        else:
            rw, rh = spec.ratio
            # The smallest rw:rh canvas that holds the source.
            target_w, target_h = max(w, -(-h * rw // rh)), max(h, -(-w * rh // rw))
        left, top = (target_w - w) // 2, (target_h - h) // 2
        right, bottom = target_w - w - left, target_h - h - top
    canvas_w, canvas_h = _round_up(w + left + right), _round_up(h + top + bottom)
    extra_w, extra_h = canvas_w - (w + left + right), canvas_h - (h + top + bottom)
    left, top = left + extra_w // 2, top + extra_h // 2
    if (left, top, canvas_w - w - left, canvas_h - h - top) == (0, 0, 0, 0):
        raise InputProblem(name, "canvas adds no border to the source: there is nothing to generate")
    if canvas_w * canvas_h > max_pixels:
        raise InputProblem(
            name,
            f"canvas {canvas_w}x{canvas_h} = {_pixels(canvas_w * canvas_h)} is over the limit of "
            f"{_pixels(max_pixels)} (ONEREWARD_MAX_IMAGE_PIXELS)",
        )
    canvas = Image.new("RGB", (canvas_w, canvas_h), CANVAS_FILL)
    canvas.paste(source, (left, top))
    mask = Image.new("L", (canvas_w, canvas_h), 255)
    mask.paste(0, (left, top, left + w, top + h))
    return canvas, mask, {"left": left, "top": top, "width": w, "height": h}


def content_hash(task_slug: str, prompt: str, image: Image.Image, mask: Image.Image) -> str:
    """SHA-256 over what makes an input itself: task, prompt and decoded pixels (not file bytes,
    so the same picture re-encoded is still recognised)."""
    digest = hashlib.sha256()
    digest.update(b"onereward-input-v1\0")
    digest.update(task_slug.encode() + b"\0" + prompt.strip().encode() + b"\0")
    digest.update(f"{image.width}x{image.height}\0".encode())
    digest.update(image.convert("RGB").tobytes())
    digest.update(mask.convert("L").tobytes())
    return digest.hexdigest()


def mask_coverage(mask: Image.Image) -> float:
    """Share of pixels under a binary mask, in (0, 1)."""
    return float((np.asarray(mask.convert("L")) >= BINARISE_AT).mean())


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def encode_thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    thumb = image.convert("RGB")
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
