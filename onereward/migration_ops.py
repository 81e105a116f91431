"""Operations that the migrations moving models between apps share. Migrations import this, so
what it does must not change once released: a new behaviour is a new function."""
from django.db import migrations


def relabel_content_types(models: list[str], old_app: str, new_app: str) -> migrations.RunPython:
    """Move the content types of `models` (lower-case model names) from `old_app` to `new_app`,
    and back when unapplied. Permissions and admin log entries point at content types: renaming
    the type keeps every group's permissions on the moved models. A type that already exists under
    the new label (made by a post-migrate signal of an earlier run) wins and the old one goes."""

    def relabel(apps, schema_editor, old, new):
        content_types = apps.get_model("contenttypes", "ContentType").objects.using(schema_editor.connection.alias)
        for model in models:
            if content_types.filter(app_label=new, model=model).exists():
                content_types.filter(app_label=old, model=model).delete()
            else:
                content_types.filter(app_label=old, model=model).update(app_label=new)

    def forwards(apps, schema_editor):
        relabel(apps, schema_editor, old_app, new_app)

    def backwards(apps, schema_editor):
        relabel(apps, schema_editor, new_app, old_app)

    return migrations.RunPython(forwards, backwards)
