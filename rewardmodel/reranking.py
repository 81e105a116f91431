"""The reranking generator backend ("rerank"): the judge picks the best of M candidates of another
generator (rewardmodel/core/rerank.py has the rule and the record).

Generation must not know the judge, so this app registers the backend (RewardModelConfig.ready).
A reranking generator's settings (RerankSettings) name the wrapped generator and the judge: a
saved judge directory, or a reward model version by name. They are checked when the generator is
saved, in the admin and the API alike (Generator.clean), against the records: the wrapped generator
exists and does not rerank itself, the reward model exists, its judge directory is there, the
weighted dimensions are the task's. Torch and transformers load only when a worker loads it.
"""
from generation.core.backends.base import BackendConfigError, load_backend
from generation.models import Generator
from preferences.export import taxonomy

from .core.rerank import RerankConfigError, RerankSettings, check_judge_dir, check_weights
from .models import RewardModelVersion

NAME = "rerank"
TARGET = "rewardmodel.reranking:RerankingBackend"


class RerankingBackend:
    """The registered backend class: check_config and from_config (generation.core.backends.base)."""

    @classmethod
    def check_config(cls, config: dict) -> dict:
        """The settings, checked against the records and normalised; BackendConfigError names the bad one."""
        try:
            settings = RerankSettings.from_dict(config)
            wrapped = Generator.objects.filter(name=settings.generator).first()
            if wrapped is None:
                names = ", ".join(Generator.objects.exclude(backend=NAME).values_list("name", flat=True)) or "none"
                raise RerankConfigError(f"generator {settings.generator!r}: no such generator; generators: {names}")
            if wrapped.backend == NAME:
                raise RerankConfigError(f"generator {settings.generator!r} reranks already; wrap the generator it "
                                        "wraps, with more candidates")
            judge_location(settings)
            check_weights(settings.weights, taxonomy())
        except RerankConfigError as exc:
            raise BackendConfigError(str(exc)) from None
        return settings.as_dict()

    @classmethod
    def records_read(cls, config: dict) -> dict:
        """What loading reads besides the settings: the wrapped generator's backend and settings and
        the judge's directory. A worker keeps a loaded generator while its key holds
        (generation.execution), so an edit of the wrapped generator or of the version's judge
        loads the reranker again."""
        try:
            settings = RerankSettings.from_dict(config)
        except RerankConfigError:
            return {}
        wrapped = Generator.objects.filter(name=settings.generator).values("pk", "backend", "settings").first()
        judge = settings.judge or RewardModelVersion.objects.filter(name=settings.reward_model).values_list(
            "model_path", flat=True).first()
        return {"generator": wrapped, "judge": judge}

    @classmethod
    def from_config(cls, config: dict):
        """A core Reranker: the wrapped generator's backend and the judge loaded (weights and all)."""
        from .core.judge import Judge
        from .core.rerank import Reranker

        settings = RerankSettings.from_dict(config)
        wrapped = Generator.objects.get(name=settings.generator)
        location = judge_location(settings)
        judge = Judge.from_pretrained(location, device=settings.device, dtype=settings.dtype)
        about = {"generator": wrapped.name, "judge": location, "reward_model": settings.reward_model or None}
        return Reranker(load_backend(wrapped.backend, wrapped.settings), judge, taxonomy,
                        candidates=settings.candidates, weights=settings.weights, batch_size=settings.batch_size,
                        about=about)


def judge_location(settings: RerankSettings) -> str:
    """The judge directory the settings name (a reward model version's, by name), checked."""
    if settings.judge:
        return settings.judge
    version = RewardModelVersion.objects.filter(name=settings.reward_model).first()
    if version is None:
        names = ", ".join(RewardModelVersion.objects.values_list("name", flat=True)[:20]) or "none yet"
        raise RerankConfigError(f"reward_model {settings.reward_model!r}: no such reward model version; "
                                f"versions: {names}")
    check_judge_dir(version.model_path, f"reward_model {settings.reward_model!r}: its judge")
    return version.model_path
