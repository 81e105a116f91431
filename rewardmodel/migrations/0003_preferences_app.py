"""Preference datasets now live in the `preferences` app (same table): state only."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('preferences', '0001_initial'),
        ('rewardmodel', '0002_validation_history'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='rewardmodelrun',
                    name='dataset',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='reward_model_runs', to='preferences.preferencedataset'),
                ),
            ],
        ),
    ]
