from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation"

    def ready(self):
        from . import demo, signals  # noqa: F401  (the demo's generators; worker start-up and file clean-up hooks)
