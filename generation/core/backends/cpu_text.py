"""Text drawn into a filled area, the text-rendering part of the CPU baseline. No weights, no Django.

The words come from the prompt (what it quotes, else its last few words); the font is Pillow's
built-in scalable font (ImageFont.load_default(size=...), Pillow >= 10.1), so no font file is needed.
"""
import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# Straight and typographic double quotes; a quoted part is what the prompt asks to be written.
QUOTED = re.compile(r'"([^"]+)"|\u201c([^\u201d]+)\u201d')
WORD = re.compile(r"[\w'!?&.,-]+")
FALLBACK_WORDS = 3
FALLBACK_TEXT = "TEXT"

# Colour words a prompt may use, as RGB. Used for the text's colour ("painted in white") and, for
# fills, as a tint towards what the prompt asks ("yellow sunflowers").
COLOUR_WORDS = {
    "white": (245, 245, 240), "black": (20, 20, 22), "grey": (128, 128, 128), "gray": (128, 128, 128),
    "red": (200, 30, 35), "orange": (235, 130, 30), "yellow": (240, 205, 40), "gold": (212, 175, 55),
    "green": (40, 150, 60), "blue": (35, 80, 200), "purple": (120, 50, 160), "pink": (235, 120, 170),
    "brown": (120, 75, 40), "silver": (190, 190, 195),
}


def prompt_text(prompt: str) -> str:
    """What to write: the quoted parts of the prompt joined by spaces, else its last few words."""
    quoted = [a or b for a, b in QUOTED.findall(prompt)]
    quoted = [q.strip() for q in quoted if q.strip()]
    if quoted:
        return " ".join(quoted)
    words = WORD.findall(prompt)
    return " ".join(words[-FALLBACK_WORDS:]) if words else FALLBACK_TEXT


def prompt_colour(prompt: str) -> tuple[str, tuple[int, int, int]] | None:
    """The first colour word of the prompt, outside its quoted parts, with its RGB; None if none."""
    unquoted = QUOTED.sub(" ", prompt).lower()
    for word in re.findall(r"[a-z]+", unquoted):
        if word in COLOUR_WORDS:
            return word, COLOUR_WORDS[word]
    return None


def luminance(rgb) -> float:
    """Rec. 601 luma of an RGB triple or an (..., 3) array, 0-255."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


@dataclass(frozen=True)
class TextStyle:
    """How the words are laid out. fill_share: share of the box the text block spans (0-1);
    lines: 1 or 2; offset: shift of the block's centre as a share of the box's free space, in
    [-1, 1] per axis; angle: degrees, counter-clockwise; weight: extra thickness of the letters
    (a stroke in their own colour) as a share of the font size, 0 = the font's regular weight;
    outline: width of an outline in the outline colour, as a share of the font size; opacity: 0-1,
    below 1 the background shows through (painted look); softness: Gaussian blur radius in pixels
    that takes the digital edge off."""

    fill_share: float = 0.8
    lines: int = 1
    offset: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0
    weight: float = 0.0
    outline: float = 0.0
    opacity: float = 1.0
    softness: float = 0.0


def _layout(text: str, lines: int) -> str:
    """The text on one line, or on two lines split at the word boundary nearest the middle."""
    words = text.split()
    if lines < 2 or len(words) < 2:
        return text
    best = min(range(1, len(words)), key=lambda i: abs(len(" ".join(words[:i])) - len(" ".join(words[i:]))))
    return " ".join(words[:best]) + "\n" + " ".join(words[best:])


def _text_size(text: str, size: int, stroke: int) -> tuple[int, int]:
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, stroke_width=stroke, align="center")
    return math.ceil(right - left), math.ceil(bottom - top)


def draw_text(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    text: str,
    colour: tuple[int, int, int],
    outline: tuple[int, int, int],
    style: TextStyle,
) -> np.ndarray:
    """The image (H, W, 3) uint8 with `text` drawn inside box = (left, top, right, bottom), pixels.

    The font size is the largest that lets the (rotated) block span `style.fill_share` of the box.
    Returns a new array; pixels outside the box are unchanged.
    """
    left, top, right, bottom = box
    box_w, box_h = max(right - left, 1), max(bottom - top, 1)
    laid_out = _layout(text, style.lines)
    # Measure once at a reference size; the text's extent scales linearly with the font size.
    reference = 100
    ref_w, ref_h = _text_size(laid_out, reference, round((style.weight + style.outline) * reference))
    theta = np.deg2rad(abs(style.angle))
    rot_w = ref_w * np.cos(theta) + ref_h * np.sin(theta)
    rot_h = ref_w * np.sin(theta) + ref_h * np.cos(theta)
    size = max(6, int(reference * style.fill_share * min(box_w / max(rot_w, 1), box_h / max(rot_h, 1))))
    font = ImageFont.load_default(size=size)
    bold = round(style.weight * size)
    outer = bold + round(style.outline * size)

    text_w, text_h = _text_size(laid_out, size, outer)
    pad = outer + size // 4
    layer = Image.new("RGBA", (text_w + 2 * pad, text_h + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    bbox = draw.multiline_textbbox((0, 0), laid_out, font=font, stroke_width=outer, align="center")
    origin = (pad - bbox[0], pad - bbox[1])
    if outer > bold:
        draw.multiline_text(
            origin,
            laid_out,
            font=font,
            fill=(*outline, 255),
            align="center",
            stroke_width=outer,
            stroke_fill=(*outline, 255),
        )
    draw.multiline_text(
        origin, laid_out, font=font, fill=(*colour, 255), align="center", stroke_width=bold, stroke_fill=(*colour, 255)
    )
    layer = layer.rotate(style.angle, resample=Image.Resampling.BICUBIC, expand=True)
    if style.softness > 0:
        layer = layer.filter(ImageFilter.GaussianBlur(style.softness))
    if style.opacity < 1.0:
        alpha = layer.getchannel("A").point(lambda a: round(a * style.opacity))
        layer.putalpha(alpha)

    free_x, free_y = box_w - layer.width, box_h - layer.height
    x = left + free_x / 2 + style.offset[0] * abs(free_x) / 2
    y = top + free_y / 2 + style.offset[1] * abs(free_y) / 2
    canvas = Image.fromarray(image).convert("RGBA")
    # Words are clipped to the box: the mask bounds what a candidate may change.
    clip = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    clip.paste(layer, (round(x), round(y)), layer)
    box_alpha = Image.new("L", canvas.size, 0)
    box_alpha.paste(255, (left, top, right, bottom))
    clip.putalpha(Image.fromarray(np.minimum(np.asarray(clip.getchannel("A")), np.asarray(box_alpha))))
    return np.asarray(Image.alpha_composite(canvas, clip).convert("RGB")).copy()
