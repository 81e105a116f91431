from django.apps import AppConfig


class InputsConfig(AppConfig):
    name = "inputs"
    verbose_name = "Inputs and taxonomy"

    def ready(self):
        from django.db.models.signals import post_delete

        from . import signals
        from .models import Input

        post_delete.connect(signals.delete_input_files, sender=Input, dispatch_uid="annotation-input-files")
