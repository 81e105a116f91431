"""The taxonomy, inputs and imports move here from `annotation`: state only, the tables keep their
names (Meta.db_table), so an existing database is not touched beyond its content types."""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from onereward.migration_ops import relabel_content_types


APP = "inputs"
MODELS = ["dimension", "task", "taskdimension", "tag", "input", "inputimport"]


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('annotation', '0007_dimension_query_prompt'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Dimension',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('slug', models.SlugField(max_length=64, unique=True)),
                        ('name', models.CharField(max_length=100)),
                        ('definition', models.TextField(help_text='Shown to annotators and put into the reward query.')),
                        ('order', models.PositiveSmallIntegerField(default=0)),
                        ('query_includes_prompt', models.BooleanField(default=False, help_text="The reward query for this dimension quotes the input's prompt (text alignment).")),
                    ],
                    options={
                        'db_table': 'annotation_dimension',
                        'ordering': ['order', 'slug'],
                    },
                ),
                migrations.CreateModel(
                    name='Tag',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=64, unique=True)),
                    ],
                    options={
                        'db_table': 'annotation_tag',
                        'ordering': ['name'],
                    },
                ),
                migrations.CreateModel(
                    name='Task',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('slug', models.SlugField(max_length=64, unique=True)),
                        ('name', models.CharField(max_length=100)),
                        ('description', models.TextField(blank=True)),
                        ('input_kind', models.CharField(choices=[('masked', 'Image and mask (white = area to generate)'), ('canvas', 'Source placed on a larger canvas; the mask is the new border')], default='masked', max_length=16)),
                        ('prompt_mode', models.CharField(choices=[('required', 'The user gives a prompt'), ('optional', "A prompt may be given; otherwise the task's default prompt is used"), ('fixed', "Always the task's default prompt")], default='required', max_length=16)),
                        ('default_prompt', models.CharField(blank=True, help_text='Used when the prompt is fixed, or optional and not given.', max_length=500)),
                        ('rl_probability', models.FloatField(default=0.0, help_text='Probability of sampling this task in an RL step (the paper: 0.5/0.25/0.25).')),
                        ('order', models.PositiveSmallIntegerField(default=0)),
                        ('active', models.BooleanField(default=True)),
                    ],
                    options={
                        'db_table': 'annotation_task',
                        'ordering': ['order', 'slug'],
                    },
                ),
                migrations.CreateModel(
                    name='Input',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('prompt', models.TextField(blank=True, help_text="The user prompt; empty where the task's default applies.")),
                        ('source', models.FileField(help_text='RGB PNG, the canvas the generator edits.', max_length=255, upload_to='')),
                        ('mask', models.FileField(help_text='Greyscale PNG, 255 = generate, 0 = keep.', max_length=255, upload_to='')),
                        ('thumbnail', models.FileField(blank=True, max_length=255, upload_to='')),
                        ('width', models.PositiveIntegerField()),
                        ('height', models.PositiveIntegerField()),
                        ('mask_coverage', models.FloatField(help_text='Share of the canvas under the mask, in (0, 1).')),
                        ('content_hash', models.CharField(help_text='SHA-256 of task, prompt, source pixels and mask pixels.', max_length=64, unique=True)),
                        ('original_name', models.CharField(blank=True, max_length=255)),
                        ('metadata', models.JSONField(blank=True, default=dict)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('tags', models.ManyToManyField(blank=True, related_name='inputs', to='inputs.tag')),
                        ('task', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='inputs', to='inputs.task')),
                    ],
                    options={
                        'db_table': 'annotation_input',
                        'ordering': ['-created_at', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='InputImport',
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
                        ('archive', models.FileField(blank=True, help_text='The uploaded zip, removed once imported or refused.', max_length=255, upload_to='')),
                        ('original_name', models.CharField(max_length=255)),
                        ('defaults', models.JSONField(blank=True, default=dict, help_text='For entries that do not say otherwise: {task, prompt, tags, canvas}.')),
                        ('problems', models.JSONField(blank=True, default=list, help_text='Every bad entry: {entry, problem}.')),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('created_inputs', models.ManyToManyField(blank=True, related_name='imports', to='inputs.input')),
                    ],
                    options={
                        'db_table': 'annotation_inputimport',
                        'ordering': ['-created_at'],
                    },
                ),
                migrations.CreateModel(
                    name='TaskDimension',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('order', models.PositiveSmallIntegerField(default=0)),
                        ('only_with_prompt', models.BooleanField(default=False, help_text='Judged only when the input has a user prompt (text alignment on extend).')),
                        ('dimension', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='task_links', to='inputs.dimension')),
                        ('task', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='task_dimensions', to='inputs.task')),
                    ],
                    options={
                        'db_table': 'annotation_taskdimension',
                        'ordering': ['task', 'order'],
                    },
                ),
                migrations.AddField(
                    model_name='task',
                    name='dimensions',
                    field=models.ManyToManyField(related_name='tasks', through='inputs.TaskDimension', to='inputs.dimension'),
                ),
                migrations.AddConstraint(
                    model_name='taskdimension',
                    constraint=models.UniqueConstraint(fields=('task', 'dimension'), name='unique_task_dimension'),
                ),
            ],
            database_operations=[relabel_content_types(MODELS, "annotation", APP)],
        ),
    ]
