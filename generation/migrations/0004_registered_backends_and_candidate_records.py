# The backend choices are read from the registry (apps register backends of their own when ready),
# and a candidate's settings may carry the backend's record of how it made the image.

import generation.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('generation', '0003_inputs_app'),
    ]

    operations = [
        migrations.AlterField(
            model_name='candidate',
            name='settings',
            field=models.JSONField(help_text='CandidateSettings: seed, steps, guidance, true_cfg, negative prompt, strength; and under "record" what the backend reported about how it made the image (a reranking generator\'s candidates and scores).'),
        ),
        migrations.AlterField(
            model_name='generator',
            name='backend',
            field=models.CharField(choices=generation.models.backend_choices, max_length=32),
        ),
    ]
