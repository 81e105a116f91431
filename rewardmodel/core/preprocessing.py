"""Qwen2-VL image preprocessing in torch, differentiable end to end.

The same function feeds the judge when it is trained on annotated pairs and when RL backpropagates
through it into the generator (METHOD.md §3): resize to the processor's target size, normalise with
the CLIP mean and std, and patchify. Patchify is a reshape/permute, so gradients reach the pixels.
The output equals transformers' Qwen2VLImageProcessor on the 8-bit image, resized or not: the
forward pass of the resize is Pillow's own (see `resize`), the backward pass a differentiable copy.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from PIL import Image

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VisionGeometry:
    """How the vision tower cuts an image: patch side in pixels, frames per temporal patch, the
    side of the square of patches merged into one language token, and the pixel-count bounds of
    the resize."""

    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    image_mean: tuple = OPENAI_CLIP_MEAN
    image_std: tuple = OPENAI_CLIP_STD

    def __post_init__(self):
        # Lists come back from JSON; tuples keep the dataclass hashable.
        object.__setattr__(self, "image_mean", tuple(float(v) for v in self.image_mean))
        object.__setattr__(self, "image_std", tuple(float(v) for v in self.image_std))
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) exceeds max_pixels ({self.max_pixels})")

    @property
    def factor(self) -> int:
        """Sides of a resized image are multiples of this many pixels."""
        return self.patch_size * self.merge_size

    def tokens_for(self, height: int, width: int) -> int:
        """Language tokens one image of this (already resized) size takes."""
        return (height // self.patch_size) * (width // self.patch_size) // (self.merge_size**2)

    def to_dict(self) -> dict:
        return {**asdict(self), "image_mean": list(self.image_mean), "image_std": list(self.image_std)}

    @classmethod
    def from_dict(cls, values: dict) -> "VisionGeometry":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_model_config(cls, config, **overrides) -> "VisionGeometry":
        """Read patch, merge and temporal patch sizes from a Qwen2-VL / Qwen2.5-VL config (or its
        vision_config); `overrides` set any field, e.g. max_pixels."""
        vision = getattr(config, "vision_config", config)
        values = {}
        for name, attribute in (("patch_size", "patch_size"), ("merge_size", "spatial_merge_size"),
                                ("temporal_patch_size", "temporal_patch_size")):
            value = getattr(vision, attribute, None)
            if isinstance(value, (list, tuple)):
                value = value[0]
            if value is not None:
                values[name] = int(value)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def target_size(height: int, width: int, geometry: VisionGeometry) -> tuple[int, int]:
    """(height, width) in pixels the processor resizes an image to: sides multiples of
    patch_size * merge_size, pixel count within [min_pixels, max_pixels], aspect ratio kept as
    closely as possible. Same arithmetic as transformers' `smart_resize`."""
    factor = geometry.factor
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > geometry.max_pixels:
        beta = math.sqrt((height * width) / geometry.max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < geometry.min_pixels:
        beta = math.sqrt(geometry.min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """image: float (3, H, W) in [0, 1] -> float (3, *size) in [0, 1]: in the forward pass, exactly
    what transformers' processor makes of the 8-bit image (Pillow's bicubic resize, by Pillow
    itself, so whatever its version does, e.g. the pass order Pillow 13 picks by the scales);
    in the backward pass, the gradient of the same antialiased bicubic (Pillow's kernel, a = -0.5)
    without the 8-bit rounding (straight-through), so RL still reaches the pixels. An image already
    at `size` is only rounded to 8 bits, as the processor sees it."""
    out_h, out_w = size
    height, width = image.shape[-2:]
    with torch.no_grad():
        pixels = torch.round(image.detach() * 255).clamp(0, 255).to(torch.uint8)
        if (out_h, out_w) != (height, width):
            resized = Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy()).resize((out_w, out_h), Image.BICUBIC)
            pixels = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)
        exact = pixels.to(device=image.device, dtype=image.dtype) / 255
    if not (image.requires_grad and torch.is_grad_enabled()):
        return exact  # scoring: the differentiable copy would only be subtracted away again
    soft = image
    if out_w != width:
        soft = _resample(soft, *_bicubic_weights(width, out_w, image.device, soft.dtype), dim=-1)
    if out_h != height:
        soft = _resample(soft, *_bicubic_weights(height, out_h, image.device, soft.dtype), dim=-2)
    return soft + (exact - soft).detach()


def _bicubic(x: float) -> float:
    a = -0.5  # Pillow's bicubic; torch's is a = -0.75
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@functools.lru_cache(maxsize=64)
def _bicubic_taps(in_size: int, out_size: int) -> tuple[tuple[tuple[float, ...], ...], tuple[int, ...]]:
    """Pillow's resampling coefficients for one side (libImaging/Resample.c, precompute_coeffs):
    per output pixel, the first input pixel and the normalised weights of its taps; downscaling
    widens the kernel by the scale (antialiasing)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    rows, starts = [], []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        taps = [_bicubic((x + xmin - center + 0.5) / filterscale) for x in range(xmax)]
        total = sum(taps)
        rows.append(tuple(w / total for w in taps) if total else tuple(taps))
        starts.append(xmin)
    return tuple(rows), tuple(starts)


def _bicubic_weights(in_size: int, out_size: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(out_size, taps) weights and the input indices they apply to (padded with weight 0)."""
    rows, starts = _bicubic_taps(in_size, out_size)
    taps = max(len(row) for row in rows)
    weights = torch.zeros(out_size, taps, dtype=torch.float64)
    index = torch.zeros(out_size, taps, dtype=torch.long)
    for xx, (row, start) in enumerate(zip(rows, starts)):
        weights[xx, : len(row)] = torch.tensor(row, dtype=torch.float64)
        index[xx, : len(row)] = torch.arange(start, start + len(row))
    return weights.to(device=device, dtype=dtype), index.to(device)


def _resample(values: torch.Tensor, weights: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """Resample `values` (C, H, W) along `dim` (-1: width, -2: height):
    out[..., o] = sum over taps t of values[..., index[o, t]] * weights[o, t]."""
    moved = values.movedim(dim, -1)
    return (moved[..., index] * weights).sum(-1).movedim(-1, dim)


def patchify(image: torch.Tensor, geometry: VisionGeometry) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """image: normalised float (C, H, W), sides multiples of geometry.factor ->
    patches (grid_h * grid_w, C * temporal_patch_size * patch_size**2) in the order the vision
    tower expects (merge windows first), and the grid (1, grid_h, grid_w)."""
    p, m, t = geometry.patch_size, geometry.merge_size, geometry.temporal_patch_size
    channels, height, width = image.shape
    if height % (p * m) or width % (p * m):
        raise ValueError(f"image size {height}x{width} is not a multiple of {p * m} pixels")
    grid_h, grid_w = height // p, width // p
    patches = image.reshape(channels, grid_h // m, m, p, grid_w // m, m, p)
    # (grid_h/m, grid_w/m, m, m, C, p, p): the m x m patches merged into one token are contiguous.
    patches = patches.permute(1, 4, 2, 5, 0, 3, 6)
    # A still image is its own temporal patch: the frame is repeated temporal_patch_size times.
    patches = patches.unsqueeze(5).expand(-1, -1, -1, -1, -1, t, -1, -1)
    return patches.reshape(grid_h * grid_w, channels * t * p * p), (1, grid_h, grid_w)


def preprocess(
    images: list[torch.Tensor],
    geometry: VisionGeometry,
    sizes: list[tuple[int, int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """images: each float (3, H, W) in [0, 1], may require grad, any device (a (N, 3, H, W)
    tensor is taken as N images). sizes: optional (height, width) per image in pixels, multiples of
    geometry.factor, instead of `target_size`.

    Returns pixel_values float (sum of grid_h * grid_w over images,
    3 * temporal_patch_size * patch_size**2) and image_grid_thw long (N, 3), the model's inputs.
    """
    images = list(images)
    if sizes is not None and len(sizes) != len(images):
        raise ValueError(f"got {len(sizes)} sizes for {len(images)} images")
    if not images:
        raise ValueError("no images to preprocess")
    all_patches, grids = [], []
    for index, image in enumerate(images):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image {index}: expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
        if not image.is_floating_point():
            raise ValueError(f"image {index}: expected float pixels in [0, 1], got {image.dtype}")
        if image.dtype not in (torch.float32, torch.float64):
            image = image.float()  # resize and normalise at full precision; the model casts after
        size = tuple(sizes[index]) if sizes is not None else target_size(*image.shape[-2:], geometry)
        image = resize(image, size)
        mean = torch.tensor(geometry.image_mean, dtype=image.dtype, device=image.device)[:, None, None]
        std = torch.tensor(geometry.image_std, dtype=image.dtype, device=image.device)[:, None, None]
        patches, grid = patchify((image - mean) / std, geometry)
        all_patches.append(patches)
        grids.append(grid)
    pixel_values = torch.cat(all_patches, dim=0)
    image_grid_thw = torch.tensor(grids, dtype=torch.long, device=pixel_values.device)
    return pixel_values, image_grid_thw
