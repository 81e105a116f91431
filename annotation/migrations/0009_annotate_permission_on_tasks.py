"""The `annotate` permission sat on Input; it belongs to annotation tasks. Groups and users that held
it keep it under its new model."""
from django.db import migrations


def _move(apps, schema_editor, old, new):
    alias = schema_editor.connection.alias
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    User = apps.get_model("auth", "User")
    old_permission = Permission.objects.using(alias).filter(
        codename="annotate", content_type__app_label=old[0], content_type__model=old[1]).first()
    if old_permission is None:
        return  # a new database: post_migrate creates the permission where it belongs
    content_type, _ = ContentType.objects.using(alias).get_or_create(app_label=new[0], model=new[1])
    permission, _ = Permission.objects.using(alias).get_or_create(
        codename="annotate", content_type=content_type, defaults={"name": old_permission.name})
    for group in Group.objects.using(alias).filter(permissions=old_permission):
        group.permissions.add(permission)
    for user in User.objects.using(alias).filter(user_permissions=old_permission):
        user.user_permissions.add(permission)
    old_permission.delete()


def forwards(apps, schema_editor):
    _move(apps, schema_editor, ("inputs", "input"), ("annotation", "annotationtask"))


def backwards(apps, schema_editor):
    _move(apps, schema_editor, ("annotation", "annotationtask"), ("inputs", "input"))


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0008_models_move_to_their_apps"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("inputs", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
