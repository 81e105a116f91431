from django.apps import AppConfig


class InputsConfig(AppConfig):
    name = "inputs"
    verbose_name = "Inputs and taxonomy"

    def ready(self):
        from django.conf import settings
        from django.db.models.signals import post_delete

        from . import signals
        from .core.images import allow_pixels
        from .models import Input

        post_delete.connect(signals.delete_input_files, sender=Input, dispatch_uid="annotation-input-files")
        # Pillow's guard would refuse images within a platform limit set above its default.
        allow_pixels(settings.ONEREWARD_MAX_IMAGE_PIXELS)
