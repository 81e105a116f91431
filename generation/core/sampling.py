"""Randomised inference settings for candidates (METHOD.md §2): ranges chosen per batch, one
draw per candidate (or per input), reproducible from the batch seed.

Plain Python, no Django: the same ranges drive generation batches and RL rollouts.
"""
import hashlib
import random
from dataclasses import asdict, dataclass

from .backends.base import CandidateSettings

# The paper's pool of negative prompts; "" is "no negative prompt".
DEFAULT_NEGATIVE_PROMPTS = ("", "nsfw", "blurry, low quality", "deformed, distorted, disfigured")


class RangeError(ValueError):
    """A randomisation range is wrong; the message names it."""


@dataclass(frozen=True)
class Ranges:
    """Inclusive ranges the settings of each candidate are drawn from.

    steps: denoising steps; guidance: FLUX embedded guidance; true_cfg: true CFG scale (1 = off);
    strength: initial noise strength in (0, 1]; negative_prompts: the pool ("" = none).
    vary: "candidate" draws settings for every candidate; "input" draws once per input, so the
    N candidates of an input differ by seed only (and are generated in one batched call).
    """

    steps: tuple[int, int] = (28, 50)
    guidance: tuple[float, float] = (20.0, 40.0)
    true_cfg: tuple[float, float] = (1.0, 4.0)
    strength: tuple[float, float] = (0.85, 1.0)
    negative_prompts: tuple[str, ...] = DEFAULT_NEGATIVE_PROMPTS
    vary: str = "candidate"

    @classmethod
    def parse(cls, raw: dict | None) -> "Ranges":
        """From JSON ({"steps": [28, 50], ..., "negative_prompts": ["", "nsfw"]}); missing keys keep
        the defaults. Raises RangeError naming what is wrong."""
        raw = dict(raw or {})
        unknown = set(raw) - {"steps", "guidance", "true_cfg", "strength", "negative_prompts", "vary"}
        if unknown:
            raise RangeError(f"unknown range(s) {sorted(unknown)}")
        defaults = cls()
        values = {}
        for name, kind in (("steps", int), ("guidance", float), ("true_cfg", float), ("strength", float)):
            values[name] = _pair(name, raw.get(name, getattr(defaults, name)), kind)
        low, high = values["steps"]
        if low <= 0:
            raise RangeError(f"steps must be at least 1 (got {low})")
        if values["guidance"][0] < 0:
            raise RangeError("guidance cannot be negative")
        if values["true_cfg"][0] < 1.0:
            raise RangeError("true_cfg below 1 would invert the guidance; use 1 for off")
        if not (0.0 < values["strength"][0] and values["strength"][1] <= 1.0):
            raise RangeError("strength must lie in (0, 1]")
        negatives = raw.get("negative_prompts", list(defaults.negative_prompts))
        if not isinstance(negatives, (list, tuple)) or not negatives or not all(isinstance(n, str) for n in negatives):
            raise RangeError('negative_prompts must be a non-empty list of texts ("" = none)')
        vary = raw.get("vary", defaults.vary)
        if vary not in ("candidate", "input"):
            raise RangeError("vary must be 'candidate' or 'input'")
        return cls(negative_prompts=tuple(n.strip() for n in negatives), vary=vary, **values)

    def as_dict(self) -> dict:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def draw(self, batch_seed: int, input_key: str, index: int) -> CandidateSettings:
        """The settings of candidate `index` of input `input_key` (its content hash), the same
        every time for the same batch seed."""
        settings_rng = random.Random(_derive(batch_seed, input_key, index if self.vary == "candidate" else "input"))
        seed = _derive(batch_seed, input_key, index, "seed") % (2**31 - 1)
        return CandidateSettings(
            seed=seed,
            steps=settings_rng.randint(*self.steps),
            guidance=round(settings_rng.uniform(*self.guidance), 3),
            true_cfg=round(settings_rng.uniform(*self.true_cfg), 3),
            negative_prompt=settings_rng.choice(self.negative_prompts),
            strength=round(settings_rng.uniform(*self.strength), 3),
        )


def _pair(name: str, value, kind) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise RangeError(f"{name} must be [low, high] or a single number")
    try:
        low, high = kind(value[0]), kind(value[1])
    except (TypeError, ValueError):
        raise RangeError(f"{name} must hold numbers") from None
    if kind is int and (low != value[0] or high != value[1]):
        raise RangeError(f"{name} must hold whole numbers")
    if low > high:
        raise RangeError(f"{name} range is inverted: {low} > {high}")
    return (low, high)


def _derive(*parts) -> int:
    """A 64-bit number from the parts, stable across processes and Python versions (unlike hash())."""
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")
