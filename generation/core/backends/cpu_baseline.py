"""CPU baseline generator: classical fills, no weights, real images to judge on any machine.

It lets the whole annotation loop run where there is no GPU: every task gets candidates that look
like plausible (if modest) edits of the photograph and differ visibly from seed to seed, so an
annotator has a real best and worst to pick.

Per request (canvas (H, W) RGB, mask 255 = generate):
1. fill the masked area with one method (see cpu_fill): "telea" or "navier_stokes" (OpenCV
   diffusion inpainting), "patch" (exemplar fill copying patches of the unmasked area) or "mirror"
   (the surroundings mirrored across the mask's edge, softened with distance). Extend canvases are
   filled the same way: their mask is the border around the source.
2. prompts that name a colour ("yellow sunflowers") may tint the fill towards it (fill and extend);
3. post-process inside the mask: sharpen or blur, colour jitter (gain, offset, saturation), film
   grain; these ramp in over a feathered band from the mask's edge, so the seam stays smooth;
4. text_rendering: draw the prompt's quoted words (else its last few words) in the mask's box,
   with a random size, colour contrasting with the fill (or the colour the prompt names), position
   jitter, slight rotation, outline and opacity;
5. keep `strength` of the result over the canvas under the mask (see below) and composite with
   the mask: pixels where the mask is 0 are the canvas's, bit for bit.

CandidateSettings fields used:
- seed: all randomness. The method is methods[seed % len(methods)], so consecutive seeds cycle
  through the configured methods; every other choice is drawn from a generator seeded with the
  seed. Same request, same pixels. describe(settings, task) lists the choices of a seed.
- strength in (0, 1]: as with a diffusion model's initial noise strength, lower keeps more of the
  canvas under the mask: the result covers it with opacity `strength` (1.0 = fully replaced;
  0.7 leaves a 30 % ghost of the removed object, or of the grey extend border).
- extra: a dict that overrides any of the seed's choices by name (e.g. {"method": "patch",
  "grain": 0.0}); unknown names are refused.
- steps, guidance, true_cfg, negative_prompt: ignored (nothing here is guided or iterated).
"""
import colorsys
from dataclasses import asdict, dataclass, fields, replace
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from .base import BackendConfigError, CandidateSettings, GenerationRequest
from .cpu_fill import (
    DIFFUSION_METHODS,
    add_mirrored_detail,
    diffusion_fill,
    mirror_fill,
    no_known_pixels_fill,
    patch_fill,
)
from .cpu_text import TextStyle, draw_text, luminance, prompt_colour, prompt_text

METHODS = ("telea", "navier_stokes", "patch", "mirror")
TEXT_TASKS = frozenset({"text_rendering"})
EXTEND_TASKS = frozenset({"image_extend"})
# Tasks whose prompt describes new content; a colour it names may tint the fill. Object removal's
# prompt is fixed, and text rendering's colour word is the text's.
TINT_TASKS_EXCLUDED = frozenset({"object_removal", "text_rendering"})
MASK_THRESHOLD = 128
ACHROMATIC_SPREAD = 6  # levels between a pixel's channels that still count as grey

# Independent random streams per purpose, so that, e.g., the patch search drawing more numbers for
# a bigger hole never shifts the grain of the same seed.
STREAM_CHOICES, STREAM_PATCH, STREAM_GRAIN = 1, 2, 3


@dataclass(frozen=True)
class CpuBaselineConfig:
    """Validated settings of the backend.

    methods: fills to cycle through by seed (subset of METHODS, order kept).
    max_side: pixels; a canvas with a longer side is processed at this size and the result
      upsampled inside the mask (the unmasked area is always the canvas's own pixels).
    patch_work_side: pixels; the longest side of the image the patch fill searches on. Larger is
      slower (time grows about with its fourth power) and finer.
    """

    methods: tuple[str, ...] = METHODS
    max_side: int = 1024
    patch_work_side: int = 192

    KEYS = ("methods", "max_side", "patch_work_side")
    MAX_SIDE_RANGE = (64, 8192)
    PATCH_WORK_SIDE_RANGE = (32, 1024)

    @classmethod
    def from_dict(cls, raw: dict) -> "CpuBaselineConfig":
        """Check a JSON object of settings; BackendConfigError names the first bad one."""
        if not isinstance(raw, dict):
            raise BackendConfigError("cpu_baseline settings must be a JSON object")
        unknown = sorted(set(raw) - set(cls.KEYS))
        if unknown:
            raise BackendConfigError(
                f"unknown cpu_baseline setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(cls.KEYS)}"
            )
        methods = raw.get("methods", cls.methods)
        if isinstance(methods, str):
            # Forms and command lines give "telea, patch".
            methods = [m.strip() for m in methods.split(",") if m.strip()]
        if not isinstance(methods, (list, tuple)) or not all(isinstance(m, str) for m in methods):
            raise BackendConfigError("methods must be a list of method names")
        bad = [m for m in methods if m not in METHODS]
        if bad:
            raise BackendConfigError(
                f"methods: unknown method(s) {', '.join(map(repr, bad))}; known: {', '.join(METHODS)}"
            )
        if not methods:
            raise BackendConfigError(f"methods must name at least one of {', '.join(METHODS)}")
        return cls(
            methods=tuple(dict.fromkeys(methods)),
            max_side=_int_setting(raw, "max_side", cls.max_side, cls.MAX_SIDE_RANGE),
            patch_work_side=_int_setting(raw, "patch_work_side", cls.patch_work_side, cls.PATCH_WORK_SIDE_RANGE),
        )

    def as_dict(self) -> dict:
        return {"methods": list(self.methods), "max_side": self.max_side, "patch_work_side": self.patch_work_side}


def _int_setting(raw: dict, key: str, default: int, bounds: tuple[int, int]) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise BackendConfigError(f"{key} must be a whole number of pixels, got {value!r}")
    low, high = bounds
    if not low <= value <= high:
        raise BackendConfigError(f"{key} must be between {low} and {high} pixels, got {value}")
    return int(value)


@dataclass(frozen=True)
class CandidateChoices:
    """Everything a seed decides. Units: pixels unless said; shares in [0, 1].

    method: the fill. radius: diffusion neighbourhood. patch_top_k: the copy is one of the k best
    matches; patch_locality: preference for near sources. mirror_blur: blur growth per pixel of
    distance. detail_reach: for diffusion fills of extend borders, how far from the edge the
    mirrored texture laid over them reaches before it has faded out. tint: opacity of the prompt's
    colour over the fill (0 = none). detail: -1 (blur) to
    +1 (sharpen). gain_r/g/b: channel gains; offset: added to every channel (0-255 levels);
    saturation: 1 = unchanged. grain: noise std as a share of 255. feather: width of the band
    over which the post-processing ramps in from the mask's edge. text_*: see cpu_text.TextStyle;
    text_tone: "contrast" (light on dark fills, dark on light) or "prompt" (the colour named).
    """

    method: str
    radius: int
    patch_top_k: int
    patch_locality: float
    mirror_blur: float
    detail_reach: float
    tint: float
    detail: float
    gain_r: float
    gain_g: float
    gain_b: float
    offset: float
    saturation: float
    grain: float
    feather: float
    text_fill_share: float
    text_lines: int
    text_offset_x: float
    text_offset_y: float
    text_angle: float
    text_weight: float
    text_outline: float
    text_opacity: float
    text_softness: float
    text_tone: str
    text_hue: float

    def as_dict(self) -> dict:
        return asdict(self)


TEXT_FIELDS = tuple(f.name for f in fields(CandidateChoices) if f.name.startswith("text_"))


def _rng(stream: int, seed: int) -> np.random.Generator:
    # numpy wants non-negative entropy; a negative seed is folded into 64 bits.
    return np.random.default_rng([stream, seed & 0xFFFF_FFFF_FFFF_FFFF])


def draw_choices(settings: CandidateSettings, methods: Sequence[str] = METHODS) -> CandidateChoices:
    """The seed's choices, then settings.extra's overrides. Always drawn in the same order, so a
    seed makes the same fill whatever the task (a text candidate is its fill plus the words)."""
    rng = _rng(STREAM_CHOICES, settings.seed)
    r = lambda low, high: round(float(rng.uniform(low, high)), 3)  # noqa: E731 (rounded: readable in describe)
    detail = r(-1.0, 1.0)
    choices = CandidateChoices(
        method=methods[settings.seed % len(methods)],
        radius=int(rng.integers(3, 10)),
        patch_top_k=int(rng.integers(1, 6)),
        patch_locality=r(0.2, 1.0),
        mirror_blur=r(0.02, 0.15),
        detail_reach=r(24.0, 128.0),
        tint=r(0.15, 0.4) if rng.uniform() < 0.6 else 0.0,
        detail=detail,
        gain_r=r(0.95, 1.05),
        gain_g=r(0.95, 1.05),
        gain_b=r(0.95, 1.05),
        offset=r(-6.0, 6.0),
        saturation=r(0.8, 1.25),
        grain=r(0.0, 0.02),
        feather=r(4.0, 24.0),
        text_fill_share=r(0.55, 0.95),
        text_lines=int(rng.integers(1, 3)),
        text_offset_x=r(-0.8, 0.8),
        text_offset_y=r(-0.8, 0.8),
        text_angle=r(-7.0, 7.0),
        text_weight=r(0.0, 0.05),
        text_outline=r(0.02, 0.06) if rng.uniform() < 0.4 else 0.0,
        text_opacity=r(0.8, 1.0),
        text_softness=r(0.0, 1.2),
        text_tone="prompt" if rng.uniform() < 0.75 else "contrast",
        text_hue=r(0.0, 1.0),
    )
    return _apply_overrides(choices, settings.extra or {})


def _apply_overrides(choices: CandidateChoices, extra: dict) -> CandidateChoices:
    known = {f.name: f.type for f in fields(CandidateChoices)}
    unknown = sorted(set(extra) - set(known))
    if unknown:
        raise BackendConfigError(
            f"settings.extra: unknown cpu_baseline choice(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(known)}"
        )
    extra = dict(extra)
    for name, value in extra.items():
        if known[name] in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise BackendConfigError(f"settings.extra: {name} must be a number, got {value!r}")
        if known[name] is int:
            if value != int(value):
                raise BackendConfigError(f"settings.extra: {name} must be a whole number, got {value!r}")
            extra[name] = int(value)
    if "method" in extra and extra["method"] not in METHODS:
        raise BackendConfigError(f"settings.extra: method {extra['method']!r} is not one of {', '.join(METHODS)}")
    if "text_tone" in extra and extra["text_tone"] not in ("prompt", "contrast"):
        raise BackendConfigError("settings.extra: text_tone must be 'prompt' or 'contrast'")
    return replace(choices, **extra)


def describe(settings: CandidateSettings, task: str = "image_fill", methods: Sequence[str] = METHODS) -> dict:
    """The choices a candidate is made with, as a JSON object to show next to it. Text choices
    appear only for text tasks; strength (the canvas kept under the mask) is included."""
    data = draw_choices(settings, methods).as_dict()
    if task not in TEXT_TASKS:
        data = {k: v for k, v in data.items() if k not in TEXT_FIELDS}
    data["strength"] = settings.strength
    return data


class CpuBaselineBackend:
    """The generator backend (see base.GeneratorBackend) that needs no weights and no GPU."""

    def __init__(self, config: CpuBaselineConfig):
        self.config = config

    @classmethod
    def check_config(cls, config: dict) -> dict:
        return CpuBaselineConfig.from_dict(config).as_dict()

    @classmethod
    def from_config(cls, config: dict) -> "CpuBaselineBackend":
        return cls(CpuBaselineConfig.from_dict(config))

    def describe(self, settings: CandidateSettings, task: str = "image_fill") -> dict:
        return describe(settings, task, self.config.methods)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Image.Image]:
        """One RGB image per request, each the size of its canvas; requests are independent."""
        return [self.generate_one(request) for request in requests]

    def generate_one(self, request: GenerationRequest) -> Image.Image:
        canvas = np.asarray(request.image.convert("RGB"))
        mask = request.mask.convert("L")
        if mask.size != request.image.size:
            raise ValueError(
                f"mask is {mask.size[0]}x{mask.size[1]} but the canvas is {request.image.width}x{request.image.height}"
            )
        hole = np.asarray(mask) >= MASK_THRESHOLD
        if not hole.any():
            return Image.fromarray(canvas.copy())
        choices = draw_choices(request.settings, self.config.methods)
        h, w = hole.shape
        scale = min(1.0, self.config.max_side / max(h, w))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            work = cv2.resize(canvas, size, interpolation=cv2.INTER_AREA)
            work_hole = cv2.resize(hole.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) > 0
        else:
            work, work_hole = canvas, hole
        result = self._edit(work, work_hole, request, choices)
        if scale < 1.0:
            result = cv2.resize(result, (w, h), interpolation=cv2.INTER_CUBIC)
        # The unmasked area is the canvas's own pixels, whatever happened above.
        return Image.fromarray(np.where(hole[..., None], result, canvas))

    # -- the steps, in order ------------------------------------------------------------------

    def _edit(
        self, image: np.ndarray, hole: np.ndarray, request: GenerationRequest, choices: CandidateChoices
    ) -> np.ndarray:
        """The edited image (H, W, 3) uint8 at working resolution; only hole pixels differ."""
        filled = self._fill(image, hole, request.task, choices, request.settings.seed)
        processed = filled.astype(np.float32)
        achromatic = is_achromatic(image, hole)
        colour = prompt_colour(request.prompt)
        if colour and choices.tint > 0 and request.task not in TINT_TASKS_EXCLUDED and not achromatic:
            processed = tint_towards(processed, colour[1], choices.tint)
        processed = post_process(processed, choices, _rng(STREAM_GRAIN, request.settings.seed))
        if achromatic:
            # Colour jitter on a black-and-white photograph would paint the mask's box in a hue.
            processed = np.repeat(processed.mean(axis=2, keepdims=True), 3, axis=2)
        ramp = feather_ramp(hole, choices.feather)[..., None]
        result = filled.astype(np.float32) * (1.0 - ramp) + processed * ramp
        result = np.clip(result + 0.5, 0, 255).astype(np.uint8)
        if request.task in TEXT_TASKS:
            result = self._write(result, hole, request.prompt, choices, achromatic)
        strength = float(np.clip(request.settings.strength, 0.0, 1.0))
        if strength < 1.0:
            result = np.clip(result * strength + image.astype(np.float32) * (1.0 - strength) + 0.5, 0, 255).astype(
                np.uint8
            )
        return np.where(hole[..., None], result, image)

    def _fill(
        self, image: np.ndarray, hole: np.ndarray, task: str, choices: CandidateChoices, seed: int
    ) -> np.ndarray:
        if hole.all():
            return no_known_pixels_fill(hole.shape, _rng(STREAM_PATCH, seed))
        if choices.method in DIFFUSION_METHODS:
            filled = diffusion_fill(image, hole, choices.method, choices.radius)
            if task in EXTEND_TASKS:
                filled = add_mirrored_detail(filled, image, hole, reach=choices.detail_reach)
            return filled
        if choices.method == "mirror":
            return mirror_fill(image, hole, choices.mirror_blur)
        return patch_fill(
            image, hole, _rng(STREAM_PATCH, seed), work_side=self.config.patch_work_side,
            top_k=choices.patch_top_k, locality=choices.patch_locality,
        )

    def _write(
        self, image: np.ndarray, hole: np.ndarray, prompt: str, choices: CandidateChoices, achromatic: bool
    ) -> np.ndarray:
        """The prompt's words drawn into the hole's bounding box."""
        ys, xs = np.nonzero(hole)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        background = float(luminance(image[hole]).mean())
        named = prompt_colour(prompt)
        colour = text_colour(
            background, named[1] if named and choices.text_tone == "prompt" else None, choices.text_hue,
            saturation=0.0 if achromatic else 1.0,
        )
        # An outline of the opposite tone keeps words legible when their colour is close to the
        # background's (a named colour is honoured even then).
        outline = (15, 15, 15) if luminance(colour) > 128 else (240, 240, 240)
        outline_width = choices.text_outline
        if abs(float(luminance(colour)) - background) < 60:
            outline_width = max(outline_width, 0.04)
        style = TextStyle(
            fill_share=choices.text_fill_share, lines=choices.text_lines,
            offset=(choices.text_offset_x, choices.text_offset_y), angle=choices.text_angle,
            weight=choices.text_weight, outline=outline_width,
            opacity=choices.text_opacity, softness=choices.text_softness,
        )
        written = draw_text(image, box, prompt_text(prompt), colour, outline, style)
        return np.where(hole[..., None], written, image)


def text_colour(
    background: float, named: tuple[int, int, int] | None, hue: float, saturation: float = 1.0
) -> tuple[int, int, int]:
    """RGB of the words: the named colour if given, else a light tint on a dark background (luma
    `background` < 128) or a deep one on a light background; `hue` in [0, 1) picks the tint,
    `saturation` scales it (0 = grey, for black-and-white photographs)."""
    if named is not None:
        return named
    if background < 128:
        r, g, b = colorsys.hsv_to_rgb(hue, 0.25 * saturation, 0.97)
    else:
        r, g, b = colorsys.hsv_to_rgb(hue, 0.7 * saturation, 0.22)
    return round(r * 255), round(g * 255), round(b * 255)


def is_achromatic(image: np.ndarray, hole: np.ndarray) -> bool:
    """Whether the kept part of an (H, W, 3) uint8 image is black and white (channels within a few
    levels of each other, JPEG noise allowed)."""
    kept = image[~hole]
    if kept.size == 0:
        return False
    spread = kept.max(axis=1).astype(np.int16) - kept.min(axis=1).astype(np.int16)
    return float(np.percentile(spread, 99)) <= ACHROMATIC_SPREAD


def tint_towards(image: np.ndarray, colour: tuple[int, int, int], opacity: float) -> np.ndarray:
    """image (H, W, 3) float 0-255 moved by `opacity` towards `colour` at the image's own luma
    (hue and saturation of the colour, lightness of the picture)."""
    luma = luminance(image)[..., None]
    target = luma * (np.asarray(colour, np.float32) / max(float(luminance(colour)), 1.0))
    return image * (1.0 - opacity) + target * opacity


def post_process(image: np.ndarray, choices: CandidateChoices, rng: np.random.Generator) -> np.ndarray:
    """Sharpen or blur, colour jitter and grain of an (H, W, 3) float 0-255 image (not clipped)."""
    if choices.detail < 0:
        image = cv2.GaussianBlur(image, (0, 0), -choices.detail * 1.5 + 1e-3)
    elif choices.detail > 0:
        soft = cv2.GaussianBlur(image, (0, 0), 1.2)
        image = image + choices.detail * (image - soft)
    grey = image.mean(axis=2, keepdims=True)
    image = grey + (image - grey) * choices.saturation
    image = image * np.array([choices.gain_r, choices.gain_g, choices.gain_b], np.float32) + choices.offset
    if choices.grain > 0:
        h, w = image.shape[:2]
        sigma = choices.grain * 255.0
        # Mostly luminance grain with a little colour, slightly clumped like film grain.
        noise = rng.standard_normal((h, w, 1), dtype=np.float32) + 0.3 * rng.standard_normal(
            (h, w, 3), dtype=np.float32
        )
        noise = cv2.GaussianBlur(noise, (0, 0), 0.6) * (sigma * 1.6)
        image = image + noise
    return image


def feather_ramp(hole: np.ndarray, width: float) -> np.ndarray:
    """(H, W) float: 0 outside the hole, rising from its edge to 1 at `width` pixels inside."""
    depth = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
    return np.clip(depth / max(width, 1e-3), 0.0, 1.0)
