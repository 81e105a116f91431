"""Classical fills of a masked area, the pixel work of the CPU baseline. No weights, no Django.

Every fill takes `image`, a uint8 array (H, W, 3) RGB, and `hole`, a bool array (H, W) with True
where pixels are to be made, and returns a new uint8 (H, W, 3) array equal to `image` outside the
hole. Fills with their own looks, so that candidates differ in kind, not only in noise:

- diffusion: OpenCV's Telea (fast marching) or Navier-Stokes inpainting; smooth, smeared colours.
- patch: exemplar fill in the spirit of image quilting: the hole is cut into tiles, filled from the
  outside in, each tile copied from a known patch whose overlap with what is already there matches
  best (one of the best few, chosen by the seed), with preferences for near sources, for continuing
  a neighbour's copy and for the colour a smooth fill predicts. Searched at a reduced resolution,
  copied at full resolution.
- mirror: each hole pixel takes the known pixel mirrored across the hole's edge, blurred more the
  further it is from that edge; for an extend canvas this is mirror padding.
"""
import cv2
import numpy as np
from scipy import ndimage

DIFFUSION_METHODS = {"telea": cv2.INPAINT_TELEA, "navier_stokes": cv2.INPAINT_NS}

# cv2.inpaint only propagates the hole's edge colours inward, so a thick hole comes out as long
# streaks, and its cost grows with the hole's area. Beyond this depth (pixels from the edge) the
# inpainting runs at a reduced resolution, where the streaks become soft blobs, and is upsampled.
DIFFUSION_MAX_DEPTH = 24
EDGE_BAND = 6  # pixels
MIRRORED_DETAIL_SIGMA = 8.0  # pixels

# Patch fill costs are mean squared differences summed over RGB (levels^2). Locality adds up to
# this much for a source one image diagonal away; a neighbour's continuation costs this share.
LOCALITY_COST = 3000.0
COHERENCE_DISCOUNT = 0.6
# Weight of the squared difference (summed over RGB) between a source's mean colour and the
# smooth fill's colour at the tile, against the overlap's mean squared difference.
GUIDE_WEIGHT = 1.0


def hole_depth(hole: np.ndarray) -> float:
    """The largest distance (pixels) from a hole pixel to the nearest known pixel."""
    if not hole.any():
        return 0.0
    return float(cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3).max())


def _resize(array: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    """cv2.resize to size = (width, height)."""
    return cv2.resize(array, size, interpolation=interpolation)


def _shrunk_hole(hole: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The hole at a smaller size, grown so that every small pixel touching the hole is in it
    (a small known pixel must stand for known pixels only)."""
    return _resize(hole.astype(np.uint8) * 255, size, cv2.INTER_AREA) > 0


def no_known_pixels_fill(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Soft coloured noise (H, W, 3) uint8, for a hole that covers the whole canvas."""
    h, w = shape
    small = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.float32)
    return np.clip(_resize(small, (w, h), cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def diffusion_fill(image: np.ndarray, hole: np.ndarray, method: str, radius: int) -> np.ndarray:
    """Telea or Navier-Stokes inpainting; radius: neighbourhood (pixels) each step averages over."""
    if not hole.any():
        return image.copy()
    h, w = hole.shape
    scale = min(1.0, DIFFUSION_MAX_DEPTH / max(hole_depth(hole), 1.0))
    if scale < 1.0:
        size = (max(2, round(w * scale)), max(2, round(h * scale)))
        small_hole = _shrunk_hole(hole, size)
        if small_hole.all():
            small_hole = _resize(hole.astype(np.uint8), size, cv2.INTER_NEAREST) > 0
        small = _resize(image, size, cv2.INTER_AREA)
        filled_small = cv2.inpaint(
            small, small_hole.astype(np.uint8) * 255, max(1, round(radius * scale * 2)), DIFFUSION_METHODS[method]
        )
        coarse = _resize(filled_small, (w, h), cv2.INTER_CUBIC)
        # The upsampled fill is soft right at the edge; a thin band there is inpainted again at full
        # resolution, with the coarse fill standing in as known pixels for the hole's interior.
        staged = image.copy()
        staged[hole] = coarse[hole]
        depth = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
        band = (hole & (depth <= EDGE_BAND)).astype(np.uint8) * 255
        filled = cv2.inpaint(staged, band, radius, DIFFUSION_METHODS[method])
    else:
        filled = cv2.inpaint(image, hole.astype(np.uint8) * 255, radius, DIFFUSION_METHODS[method])
    out = image.copy()
    out[hole] = filled[hole]
    return out


def mirror_fill(image: np.ndarray, hole: np.ndarray, blur_reach: float) -> np.ndarray:
    """Each hole pixel p takes the pixel at 2q - p, q its nearest known pixel, blurred with a sigma
    that grows by `blur_reach` pixels per pixel of distance from the edge (0 = sharp; 0.02-0.2
    is sensible)."""
    if not hole.any():
        return image.copy()
    h, w = hole.shape
    distance, (qy, qx) = ndimage.distance_transform_edt(hole, return_indices=True)
    ys, xs = np.nonzero(hole)
    ry = np.clip(2 * qy[ys, xs] - ys, 0, h - 1)
    rx = np.clip(2 * qx[ys, xs] - xs, 0, w - 1)
    # The mirror image can land in the hole again (a thin known strip, a concave hole); those
    # pixels repeat the edge pixel instead.
    inside = hole[ry, rx]
    ry[inside], rx[inside] = qy[ys, xs][inside], qx[ys, xs][inside]
    mirrored = image.copy()
    mirrored[ys, xs] = image[ry, rx]
    # Blend a few blur levels by distance: sharp next to the edge, soft far from it.
    out = mirrored.astype(np.float32)
    depth = distance.astype(np.float32)
    for sigma in (1.5, 3.0, 6.0, 12.0) if blur_reach > 0 else ():
        reach = sigma / blur_reach
        weight = np.clip(depth / reach, 0.0, 1.0)[..., None]
        blurred = cv2.GaussianBlur(mirrored, (0, 0), sigma).astype(np.float32)
        out = out * (1.0 - weight) + blurred * weight
    result = image.copy()
    result[hole] = np.clip(out[hole] + 0.5, 0, 255).astype(np.uint8)
    return result


def _core_weight(length: int, margin: float, band: float) -> np.ndarray:
    """Weights (length,) for one axis of a tile's window: 1 over the core, falling to ~0 across a
    band of 2 * `band` pixels centred on the core's edge (`margin` pixels in from the window's
    ends). A narrow band keeps copies sharp: wide blending of two sources looks like a double
    exposure."""
    x = np.arange(length, dtype=np.float32) + 0.5
    distance_in = np.minimum(x, length - x)
    return np.clip((distance_in - margin + band) / (2.0 * band), 0.0, 1.0) + 1e-4


def patch_fill(
    image: np.ndarray,
    hole: np.ndarray,
    rng: np.random.Generator,
    *,
    work_side: int = 192,
    tile: int = 8,
    overlap: int = 4,
    top_k: int = 3,
    locality: float = 0.0,
) -> np.ndarray:
    """Exemplar fill: tiles of the hole copied from known patches, outside in.

    work_side: longest side (pixels) of the image the search runs on; tile, overlap: tile core and
    its overlap with neighbours, in work pixels; top_k: the copy is one of the k best matches, drawn
    with `rng` (the main source of difference between seeds); locality: >= 0, how much nearer
    sources are preferred (0 = the best match anywhere).
    """
    if not hole.any():
        return image.copy()
    h, w = hole.shape
    scale = min(1.0, work_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = _resize(image, size, cv2.INTER_AREA) if scale < 1.0 else image.copy()
    small_hole = _shrunk_hole(hole, size) if scale < 1.0 else hole.copy()
    sh, sw = small_hole.shape
    window = tile + 2 * overlap

    # A source window must lie on known pixels, with one work pixel to spare so that the same
    # window scaled to full resolution does too.
    unsafe = cv2.dilate(small_hole.astype(np.uint8), np.ones((3, 3), np.uint8))
    safe = (1 - unsafe).astype(np.uint8)
    if not safe.any():
        return diffusion_fill(image, hole, "telea", 5)

    # The search only needs the part of the image that holds known windows.
    ys, xs = np.nonzero(safe)
    sy0, sy1, sx0, sx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    valid_cache: dict[tuple[int, int], np.ndarray] = {}
    mean_cache: dict[tuple[int, int], np.ndarray] = {}

    # A guide for the copies' overall colour: a smooth diffusion fill. Matching the overlap alone
    # lets a chain of tiles settle on any region with a similar edge (a face, for the dark-over-
    # light edge of a removed rocket); a source whose average colour differs from what the
    # surroundings predict there pays for it.
    guide = cv2.blur(diffusion_fill(small, small_hole, "telea", 3).astype(np.float32), (window, window))
    search_smooth = cv2.GaussianBlur(small.astype(np.float32), (0, 0), 1.0)[sy0:sy1, sx0:sx1]

    def source_means(th: int, tw: int) -> np.ndarray:
        """(positions, 3): mean colour of every template-sized window of the search crop."""
        if (th, tw) not in mean_cache:
            means = cv2.boxFilter(
                search_smooth, -1, (tw, th), anchor=(0, 0), normalize=True, borderType=cv2.BORDER_REPLICATE
            )
            mean_cache[th, tw] = means[: search_smooth.shape[0] - th + 1, : search_smooth.shape[1] - tw + 1]
        return mean_cache[th, tw]

    def valid_origins(th: int, tw: int) -> np.ndarray:
        """Bool (sy1-sy0-th+1, sx1-sx0-tw+1): template-sized windows (in the search crop) that are all safe."""
        if (th, tw) not in valid_cache:
            crop = safe[sy0:sy1, sx0:sx1]
            eroded = cv2.erode(
                crop, np.ones((th, tw), np.uint8), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0
            )
            valid_cache[th, tw] = eroded[: crop.shape[0] - th + 1, : crop.shape[1] - tw + 1] > 0
        return valid_cache[th, tw]

    # Tiles on a grid over the hole's bounding box; a tile is kept when its core meets the hole.
    hy, hx = np.nonzero(small_hole)
    tiles = []
    for ty in range(hy.min(), hy.max() + 1, tile):
        for tx in range(hx.min(), hx.max() + 1, tile):
            if small_hole[ty : ty + tile, tx : tx + tile].any():
                tiles.append((ty, tx))
    known = ~small_hole
    work = small.copy()
    displacement: dict[tuple[int, int], tuple[int, int]] = {}
    remaining = list(range(len(tiles)))
    diagonal = float(np.hypot(sh, sw))
    jitter = rng.uniform(0.0, 0.05, size=len(tiles))

    while remaining:
        # Outside in: the tile whose window already knows most of its pixels goes next.
        integral = cv2.integral(known.astype(np.uint8))
        best, best_score = None, -1.0
        for index in remaining:
            ty, tx = tiles[index]
            y0, x0 = max(ty - overlap, 0), max(tx - overlap, 0)
            y1, x1 = min(ty + tile + overlap, sh), min(tx + tile + overlap, sw)
            count = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
            score = count / ((y1 - y0) * (x1 - x0)) + jitter[index]
            if score > best_score:
                best, best_score = index, score
        remaining.remove(best)
        ty, tx = tiles[best]
        y0, x0 = max(ty - overlap, 0), max(tx - overlap, 0)
        y1, x1 = min(ty + tile + overlap, sh), min(tx + tile + overlap, sw)
        template = np.ascontiguousarray(work[y0:y1, x0:x1])
        template_known = known[y0:y1, x0:x1].astype(np.uint8)
        valid = valid_origins(y1 - y0, x1 - x0)
        if not valid.any():
            vy, vx = 0, 0
        else:
            if template_known.any():
                cost = cv2.matchTemplate(
                    work[sy0:sy1, sx0:sx1],
                    template,
                    cv2.TM_SQDIFF,
                    mask=np.repeat(template_known[..., None], 3, axis=2),
                )
                cost = cost / max(int(template_known.sum()), 1)
            else:
                cost = rng.uniform(0.0, 1.0, size=valid.shape).astype(np.float32)
            expected = guide[min((y0 + y1) // 2, sh - 1), min((x0 + x1) // 2, sw - 1)]
            cost = cost + GUIDE_WEIGHT * ((source_means(y1 - y0, x1 - x0) - expected) ** 2).sum(axis=2)
            cost = np.where(valid, cost, np.inf)
            if locality > 0:
                # Left to colour matching alone, a chain of tiles drifts far from the hole and
                # brings in unrelated parts (a cat's eye in the background it extends).
                oy, ox = np.mgrid[sy0 : sy0 + valid.shape[0], sx0 : sx0 + valid.shape[1]]
                cost = cost + locality * LOCALITY_COST * np.hypot(oy - y0, ox - x0) / diagonal
            for ny, nx in ((ty - tile, tx), (ty + tile, tx), (ty, tx - tile), (ty, tx + tile)):
                # Coherence, as in PatchMatch: continuing a neighbour's copy makes whole regions
                # that look shifted rather than a mosaic of unrelated tiles.
                if (ny, nx) in displacement:
                    cy, cx = y0 + displacement[ny, nx][0] - sy0, x0 + displacement[ny, nx][1] - sx0
                    if 0 <= cy < valid.shape[0] and 0 <= cx < valid.shape[1] and np.isfinite(cost[cy, cx]):
                        cost[cy, cx] *= COHERENCE_DISCOUNT
            flat = cost.ravel()
            k = int(min(top_k, np.isfinite(flat).sum()))
            candidates = np.argpartition(flat, k - 1)[:k]
            candidates = candidates[np.argsort(flat[candidates], kind="stable")]
            choice = int(candidates[rng.integers(k)])
            oy, ox = divmod(choice, valid.shape[1])
            vy, vx = sy0 + oy - y0, sx0 + ox - x0
        displacement[ty, tx] = (vy, vx)
        cy1, cx1 = min(ty + tile, sh), min(tx + tile, sw)
        core_unknown = ~known[ty:cy1, tx:cx1]
        work[ty:cy1, tx:cx1][core_unknown] = work[ty + vy : cy1 + vy, tx + vx : cx1 + vx][core_unknown]
        known[ty:cy1, tx:cx1] = True

    return _render_patches(image, hole, displacement, tile, overlap, 1.0 / scale, small_fallback=work)


def _split_frequencies(image: np.ndarray, hole: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(smooth, detail) float32 (H, W, 3) with smooth + detail = image on known pixels. The blur
    averages known pixels only, so what is under the hole does not leak into the sources."""
    known = (~hole).astype(np.float32)
    weight = cv2.GaussianBlur(known, (0, 0), sigma)[..., None]
    smooth = cv2.GaussianBlur(image.astype(np.float32) * known[..., None], (0, 0), sigma) / np.maximum(weight, 1e-6)
    return smooth, image.astype(np.float32) - smooth


def _render_patches(
    image: np.ndarray,
    hole: np.ndarray,
    displacement: dict[tuple[int, int], tuple[int, int]],
    tile: int,
    overlap: int,
    factor: float,
    small_fallback: np.ndarray,
) -> np.ndarray:
    """Copy every tile's source window at full resolution (work coordinates times `factor`) into
    the hole; only hole pixels change.

    Copies rarely agree in overall brightness, and wide blending of fine detail looks like a double
    exposure. So the smooth part of the sources (structure above ~half an overlap) is blended
    across the whole overlap, and their fine detail only across a narrow band at the tile's edge.
    """
    h, w = hole.shape
    sigma = max(1.0, 0.5 * overlap * factor)
    layers = _split_frequencies(image, hole, sigma)
    bands = (overlap * factor, max(1.0, 0.25 * overlap * factor))
    totals = [np.zeros((h, w, 3), np.float32) for _ in layers]
    weights = [np.zeros((h, w), np.float32) for _ in layers]
    for (ty, tx), (vy, vx) in displacement.items():
        wy0, wx0 = round((ty - overlap) * factor), round((tx - overlap) * factor)
        wy1, wx1 = round((ty + tile + overlap) * factor), round((tx + tile + overlap) * factor)
        dy, dx = round(vy * factor), round(vx * factor)
        # Clip the window so that both it and its source lie inside the image.
        y0, x0 = max(wy0, 0, -dy), max(wx0, 0, -dx)
        y1, x1 = min(wy1, h, h - dy), min(wx1, w, w - dx)
        if y0 >= y1 or x0 >= x1:
            continue
        usable = (~hole[y0 + dy : y1 + dy, x0 + dx : x1 + dx]) & hole[y0:y1, x0:x1]
        for layer, band, total, weight_sum in zip(layers, bands, totals, weights):
            weight = np.outer(
                _core_weight(wy1 - wy0, overlap * factor, band), _core_weight(wx1 - wx0, overlap * factor, band)
            )
            tile_weight = weight[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0] * usable
            total[y0:y1, x0:x1] += layer[y0 + dy : y1 + dy, x0 + dx : x1 + dx] * tile_weight[..., None]
            weight_sum[y0:y1, x0:x1] += tile_weight
    out = image.copy()
    covered = hole & (weights[0] > 0)
    mixed = sum(total[covered] / weight_sum[covered][:, None] for total, weight_sum in zip(totals, weights))
    out[covered] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    missing = hole & ~covered
    if missing.any():
        # Rounding can leave a few pixels without a copy; the work-resolution result covers them.
        upsampled = _resize(small_fallback, (w, h), cv2.INTER_LINEAR)
        out[missing] = upsampled[missing]
    return out


def add_mirrored_detail(filled: np.ndarray, image: np.ndarray, hole: np.ndarray, reach: float) -> np.ndarray:
    """A diffusion fill with texture: the detail (below ~MIRRORED_DETAIL_SIGMA pixels) of the sharp
    mirror fill added on top, its amplitude falling linearly from 1 at the hole's edge to 0 at
    `reach` pixels from it. Diffusion alone carries colour but no texture, which on a wide extend
    border reads as a flat smear next to a detailed photograph; far from the edge the mirror would
    show recognisable ghosts (a cat's mirrored eyes), hence the fade."""
    mirrored = mirror_fill(image, hole, blur_reach=0.0).astype(np.float32)
    # A wide blur spreads the negative ring of each detail thinly: a narrow one darkens a ring
    # around every star on a night sky.
    detail = mirrored - cv2.GaussianBlur(mirrored, (0, 0), MIRRORED_DETAIL_SIGMA)
    depth = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
    amplitude = np.clip(1.0 - depth / max(reach, 1.0), 0.0, 1.0)
    out = image.copy()
    out[hole] = np.clip(
        filled[hole].astype(np.float32) + detail[hole] * amplitude[hole][:, None] + 0.5, 0, 255
    ).astype(np.uint8)
    return out
