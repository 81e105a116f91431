from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Inputs, taxonomy and annotation"

    def ready(self):
        from django.db.models.signals import post_delete

        from . import signals
        from .models import Input

        post_delete.connect(signals.delete_input_files, sender=Input, dispatch_uid="annotation-input-files")
