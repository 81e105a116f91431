"""The interface every generator backend implements, shared by generation batches and RL.

A backend turns GenerationRequests (one canvas + mask + prompt + the exact settings of one
candidate) into images of the canvas's size. It batches requests whose settings allow it, and the
same request on the same hardware gives the same pixels (the seed fixes all randomness).
Backends import nothing from Django: a worker, a notebook or an RL trainer can use them directly.

A backend may also say how it made each image (a JSON object per image, e.g. the scores a
reranking backend gave the candidates it chose from): it then has `generate_recorded`, and the
batch code stores each record with its candidate (`generate_recorded` below calls either kind).
"""
from dataclasses import asdict, dataclass, field
from importlib import import_module
from typing import Protocol, Sequence

from PIL import Image


@dataclass(frozen=True)
class CandidateSettings:
    """Everything that made one candidate, recorded with it so it can be made again.

    seed: fixes the initial noise (and any other randomness of the backend).
    steps: denoising steps. guidance: FLUX embedded guidance. true_cfg: true classifier-free
    guidance scale (1.0 = off: no negative branch). negative_prompt: "" = none.
    strength: initial noise strength in (0, 1]; 1.0 starts from pure noise, lower keeps more of the
    canvas under the mask. extra: backend-specific choices (e.g. the CPU baseline's method).
    """

    seed: int
    steps: int = 50
    guidance: float = 30.0
    true_cfg: float = 1.0
    negative_prompt: str = ""
    strength: float = 1.0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CandidateSettings":
        known = {
            k: data[k]
            for k in ("seed", "steps", "guidance", "true_cfg", "negative_prompt", "strength", "extra")
            if k in data
        }
        return cls(**known)


@dataclass
class GenerationRequest:
    """One candidate to make. image: RGB canvas; mask: mode "L", 255 = generate, 0 = keep;
    prompt: the effective prompt (task defaults applied); task: the task slug. prompt_given: whether
    the user gave the prompt (dimensions such as text alignment on extend are judged only then);
    None when the caller does not know."""

    image: Image.Image
    mask: Image.Image
    prompt: str
    task: str
    settings: CandidateSettings
    prompt_given: bool | None = None


@dataclass
class GeneratedImage:
    """One image and the record of how it was made (a JSON object; empty when there is nothing to say)."""

    image: Image.Image
    record: dict = field(default_factory=dict)


class GeneratorBackend(Protocol):
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Image.Image]:
        """One RGB image per request, in order, each the size of its request's canvas."""
        ...


def generate_recorded(backend: GeneratorBackend, requests: Sequence[GenerationRequest]) -> list[GeneratedImage]:
    """One GeneratedImage per request: the backend's own records when it keeps them
    (`backend.generate_recorded`), else its images with empty records."""
    if hasattr(backend, "generate_recorded"):
        return list(backend.generate_recorded(requests))
    return [GeneratedImage(image) for image in backend.generate(requests)]


# backend name -> "module:Class". The class has from_config(config: dict) -> backend (loads
# weights) and check_config(config: dict) -> dict (validates and normalises without loading,
# raising BackendConfigError; used by forms before anything is queued). Apps above generation add
# theirs with register_backend (the reranking backend of rewardmodel, which judges candidates).
BACKENDS = {
    "flux_fill": "generation.core.backends.flux_fill:FluxFillBackend",
    "cpu_baseline": "generation.core.backends.cpu_baseline:CpuBaselineBackend",
}


def register_backend(name: str, target: str) -> None:
    """Make backend `name` ("module:Class", as in BACKENDS) available to generators. Called from an
    AppConfig.ready(); registering the same name twice with another target is refused."""
    if BACKENDS.get(name, target) != target:
        raise ValueError(f"backend {name!r} is registered already ({BACKENDS[name]})")
    BACKENDS[name] = target


class BackendConfigError(ValueError):
    """A backend's configuration is wrong; the message names the setting."""


def backend_class(name: str):
    try:
        target = BACKENDS[name]
    except KeyError:
        raise BackendConfigError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(import_module(module_name), class_name)


def check_backend_config(name: str, config: dict) -> dict:
    """The configuration, validated and normalised, without loading any weights."""
    if not isinstance(config, dict):
        raise BackendConfigError("settings must be a JSON object")
    return backend_class(name).check_config(dict(config))


def load_backend(name: str, config: dict) -> GeneratorBackend:
    """Build a backend (weights loaded) from its name and its configuration (a JSON object)."""
    return backend_class(name).from_config(check_backend_config(name, config))
