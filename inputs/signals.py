"""Files follow their rows: an input's images are removed from storage when the input is deleted."""
from onereward.files import delete_after_commit


def delete_input_files(sender, instance, **kwargs):
    delete_after_commit([instance.source, instance.mask, instance.thumbnail])
