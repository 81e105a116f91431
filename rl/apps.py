from django.apps import AppConfig


class RLConfig(AppConfig):
    name = "rl"
    verbose_name = "RL runs"

    def ready(self):
        from . import signals  # noqa: F401
