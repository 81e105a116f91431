"""Tags and studies now live in the `inputs` and `evaluation` apps (same tables): state only."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('evaluation', '0001_initial'),
        ('inputs', '0001_initial'),
        ('rl', '0002_training_history'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='policycheckpoint',
                    name='study',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='evaluation.study'),
                ),
                migrations.AlterField(
                    model_name='rlrun',
                    name='eval_tags',
                    field=models.ManyToManyField(blank=True, help_text="Held-out inputs for the judge's evaluation of the checkpoint.", related_name='+', to='inputs.tag'),
                ),
                migrations.AlterField(
                    model_name='rlrun',
                    name='train_tags',
                    field=models.ManyToManyField(blank=True, help_text='The condition pool: inputs with these tags (empty = every input).', related_name='+', to='inputs.tag'),
                ),
            ],
        ),
    ]
