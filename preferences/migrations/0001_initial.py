"""Preference datasets move here from `annotation`: state only, the table keeps its name."""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from onereward.migration_ops import relabel_content_types


APP = "preferences"
MODELS = ["preferencedataset"]


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('annotation', '0007_dimension_query_prompt'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('generation', '0003_inputs_app'),
        ('inputs', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='PreferenceDataset',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('done', 'Done'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], db_index=True, default='queued', max_length=16)),
                        ('progress_done', models.PositiveIntegerField(default=0)),
                        ('progress_total', models.PositiveIntegerField(default=0)),
                        ('error', models.TextField(blank=True)),
                        ('celery_task_id', models.CharField(blank=True, max_length=64)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('name', models.SlugField(help_text='Versions of one dataset share a name.', max_length=100)),
                        ('version', models.PositiveIntegerField(editable=False)),
                        ('description', models.TextField(blank=True)),
                        ('submitted_from', models.DateTimeField(blank=True, help_text='Judgments submitted at or after this.', null=True)),
                        ('submitted_until', models.DateTimeField(blank=True, help_text='Judgments submitted before this.', null=True)),
                        ('good_standing_only', models.BooleanField(default=True, help_text='Leave out paused annotators and those whose gold accuracy is below the threshold.')),
                        ('min_gold_accuracy', models.FloatField(blank=True, help_text='With good standing only: the gold accuracy needed; empty = the QC threshold.', null=True)),
                        ('include_gold', models.BooleanField(default=False, help_text='Also judgments on gold tasks.')),
                        ('include_repeats', models.BooleanField(default=False, help_text='Also repeat judgments (self-consistency checks).')),
                        ('pairing', models.CharField(choices=[('best_worst', 'Best > worst (one pair)'), ('best_worst_all', 'Best > others > worst (2N-3 pairs)')], default='best_worst', max_length=16)),
                        ('aggregation', models.CharField(choices=[('majority', 'Majority of annotators'), ('unanimous', 'Unanimous annotators only'), ('per_annotator', 'One row per annotator')], default='majority', max_length=16)),
                        ('tie_rule', models.CharField(choices=[('drop', 'Drop the pair'), ('both_orders', 'Keep both orders at 0.5')], default='drop', max_length=16)),
                        ('min_votes', models.PositiveSmallIntegerField(default=1, help_text='Votes a pair needs for its winner to be kept.')),
                        ('train_fraction', models.FloatField(default=0.9)),
                        ('validation_fraction', models.FloatField(default=0.05)),
                        ('test_fraction', models.FloatField(default=0.05)),
                        ('split_seed', models.BigIntegerField(default=0)),
                        ('embed_images', models.BooleanField(default=False, help_text='Put image bytes in the files instead of storage URIs.')),
                        ('formats', models.JSONField(blank=True, default=list, help_text='Files to write besides Parquet: any of "jsonl", "trl".')),
                        ('counts', models.JSONField(blank=True, default=dict, help_text='{task: {dimension: {split: pairs}}}.')),
                        ('pair_count', models.PositiveIntegerField(default=0)),
                        ('judgment_count', models.PositiveIntegerField(default=0)),
                        ('content_hash', models.CharField(blank=True, max_length=64)),
                        ('manifest', models.JSONField(blank=True, default=dict)),
                        ('annotators', models.ManyToManyField(blank=True, help_text='Empty = every annotator (in good standing, if asked).', related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('batches', models.ManyToManyField(blank=True, help_text='Empty = every batch.', related_name='preference_datasets', to='generation.generationbatch')),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('dimensions', models.ManyToManyField(blank=True, help_text='Empty = every dimension.', related_name='+', to='inputs.dimension')),
                        ('tasks', models.ManyToManyField(blank=True, help_text='Empty = every task.', related_name='+', to='inputs.task')),
                    ],
                    options={
                        'db_table': 'annotation_preferencedataset',
                        'ordering': ['name', '-version'],
                        'constraints': [models.UniqueConstraint(fields=('name', 'version'), name='unique_dataset_version')],
                    },
                ),
            ],
            database_operations=[relabel_content_types(MODELS, "annotation", APP)],
        ),
    ]
