from django.db import migrations


def seed_taxonomy(apps, schema_editor):
    from inputs.taxonomy_seed import seed

    seed(apps.get_model("annotation", "Task"), apps.get_model("annotation", "Dimension"),
         apps.get_model("annotation", "TaskDimension"))


class Migration(migrations.Migration):
    dependencies = [("annotation", "0001_initial")]
    operations = [migrations.RunPython(seed_taxonomy, migrations.RunPython.noop)]
