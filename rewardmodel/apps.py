from django.apps import AppConfig


class RewardModelConfig(AppConfig):
    name = "rewardmodel"
    verbose_name = "Reward models"

    def ready(self):
        from generation.core.backends.base import register_backend

        from .reranking import NAME, TARGET

        # Generators may rerank another generator's candidates with a judge (rewardmodel/reranking.py).
        register_backend(NAME, TARGET)
