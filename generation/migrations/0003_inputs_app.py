"""Inputs now live in the `inputs` app (same table): state only."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('generation', '0002_batch_for_annotation'),
        ('inputs', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='candidateset',
                    name='input',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='candidate_sets', to='inputs.input'),
                ),
                migrations.AlterField(
                    model_name='generationbatch',
                    name='inputs',
                    field=models.ManyToManyField(related_name='generation_batches', through='generation.CandidateSet', to='inputs.input'),
                ),
            ],
        ),
    ]
