from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self):
        from . import signals  # noqa: F401  (a finished candidate set becomes an annotation task)
