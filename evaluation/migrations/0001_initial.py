"""Human evaluation studies move here from `annotation`: state only, the tables keep their names."""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from onereward.migration_ops import relabel_content_types


APP = "evaluation"
MODELS = ["study", "studyarm", "studyitem", "studycandidate", "studyslot", "studyjudgment", "usabilityvote", "studypick"]


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
                    name='Study',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=200, unique=True)),
                        ('description', models.TextField(blank=True)),
                        ('judgments_per_item', models.PositiveSmallIntegerField(default=3, help_text='Annotators wanted per input, each a different person.')),
                        ('active', models.BooleanField(default=True, help_text='Only active studies are handed out to annotators.')),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'verbose_name_plural': 'studies',
                        'db_table': 'annotation_study',
                        'ordering': ['-created_at'],
                    },
                ),
                migrations.CreateModel(
                    name='StudyArm',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('label', models.CharField(help_text='How the report names the arm ("A", "base", "RL step 8k").', max_length=32)),
                        ('order', models.PositiveSmallIntegerField(default=0)),
                        ('batch', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='study_arms', to='generation.generationbatch')),
                        ('study', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='arms', to='evaluation.study')),
                    ],
                    options={
                        'db_table': 'annotation_studyarm',
                        'ordering': ['study', 'order', 'pk'],
                    },
                ),
                migrations.CreateModel(
                    name='StudyItem',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('judgments_done', models.PositiveIntegerField(default=0)),
                        ('input', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='study_items', to='inputs.input')),
                        ('study', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='items', to='evaluation.study')),
                    ],
                    options={
                        'db_table': 'annotation_studyitem',
                        'ordering': ['study', 'pk'],
                    },
                ),
                migrations.CreateModel(
                    name='StudyCandidate',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('arm', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='study_candidates', to='evaluation.studyarm')),
                        ('candidate', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='generation.candidate')),
                        ('item', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='study_candidates', to='evaluation.studyitem')),
                    ],
                    options={
                        'db_table': 'annotation_studycandidate',
                        'ordering': ['item', 'arm'],
                    },
                ),
                migrations.CreateModel(
                    name='StudyJudgment',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('shown_order', models.JSONField(help_text='StudyCandidate ids in the order the annotator saw them, left to right.')),
                        ('submission_id', models.UUIDField(help_text='Sent by the page; a retried submit stores nothing new.', unique=True)),
                        ('dwell_ms', models.PositiveIntegerField(default=0)),
                        ('submitted_at', models.DateTimeField(auto_now_add=True)),
                        ('annotator', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='study_judgments', to=settings.AUTH_USER_MODEL)),
                        ('item', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='judgments', to='evaluation.studyitem')),
                    ],
                    options={
                        'db_table': 'annotation_studyjudgment',
                        'ordering': ['pk'],
                    },
                ),
                migrations.CreateModel(
                    name='StudyPick',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('discarded', models.BooleanField(default=False)),
                        ('best', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='evaluation.studycandidate')),
                        ('dimension', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='inputs.dimension')),
                        ('judgment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='picks', to='evaluation.studyjudgment')),
                        ('worst', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='evaluation.studycandidate')),
                    ],
                    options={
                        'db_table': 'annotation_studypick',
                    },
                ),
                migrations.CreateModel(
                    name='StudySlot',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('state', models.CharField(choices=[('open', 'Open'), ('leased', 'Leased'), ('done', 'Done')], default='open', max_length=8)),
                        ('leased_until', models.DateTimeField(blank=True, null=True)),
                        ('assigned_at', models.DateTimeField(blank=True, null=True)),
                        ('shown_order', models.JSONField(blank=True, default=list)),
                        ('annotator', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='study_slots', to=settings.AUTH_USER_MODEL)),
                        ('item', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='slots', to='evaluation.studyitem')),
                    ],
                    options={
                        'db_table': 'annotation_studyslot',
                        'ordering': ['item', 'pk'],
                    },
                ),
                migrations.AddField(
                    model_name='studyjudgment',
                    name='slot',
                    field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='judgment', to='evaluation.studyslot'),
                ),
                migrations.CreateModel(
                    name='UsabilityVote',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('usable', models.BooleanField()),
                        ('judgment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='usability_votes', to='evaluation.studyjudgment')),
                        ('study_candidate', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='usability_votes', to='evaluation.studycandidate')),
                    ],
                    options={
                        'db_table': 'annotation_usabilityvote',
                    },
                ),
                migrations.AddConstraint(
                    model_name='studyarm',
                    constraint=models.UniqueConstraint(fields=('study', 'batch'), name='one_arm_per_batch'),
                ),
                migrations.AddConstraint(
                    model_name='studyarm',
                    constraint=models.UniqueConstraint(fields=('study', 'label'), name='unique_arm_label'),
                ),
                migrations.AddConstraint(
                    model_name='studyitem',
                    constraint=models.UniqueConstraint(fields=('study', 'input'), name='one_item_per_study_input'),
                ),
                migrations.AddConstraint(
                    model_name='studycandidate',
                    constraint=models.UniqueConstraint(fields=('item', 'arm'), name='one_candidate_per_item_arm'),
                ),
                migrations.AddConstraint(
                    model_name='studypick',
                    constraint=models.UniqueConstraint(fields=('judgment', 'dimension'), name='one_study_pick_per_dimension'),
                ),
                migrations.AddConstraint(
                    model_name='studypick',
                    constraint=models.CheckConstraint(condition=models.Q(models.Q(('best__isnull', True), ('discarded', True), ('worst__isnull', True)), models.Q(('best__isnull', False), ('discarded', False), ('worst__isnull', False), models.Q(('best', models.F('worst')), _negated=True)), _connector='OR'), name='study_pick_is_best_worst_or_discarded'),
                ),
                migrations.AddIndex(
                    model_name='studyslot',
                    index=models.Index(condition=models.Q(('state__in', ['open', 'leased'])), fields=['item', 'id'], name='study_slot_pool'),
                ),
                migrations.AddIndex(
                    model_name='studyslot',
                    index=models.Index(fields=['annotator', 'item'], name='study_slot_annotator_item'),
                ),
                migrations.AddConstraint(
                    model_name='studyslot',
                    constraint=models.UniqueConstraint(condition=models.Q(('annotator__isnull', False)), fields=('item', 'annotator'), name='one_study_slot_per_annotator_item'),
                ),
                migrations.AddConstraint(
                    model_name='studyjudgment',
                    constraint=models.UniqueConstraint(fields=('item', 'annotator'), name='one_study_judgment_per_annotator'),
                ),
                migrations.AddConstraint(
                    model_name='usabilityvote',
                    constraint=models.UniqueConstraint(fields=('judgment', 'study_candidate'), name='one_vote_per_candidate'),
                ),
            ],
            database_operations=[relabel_content_types(MODELS, "annotation", APP)],
        ),
    ]
