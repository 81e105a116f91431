"""The models that moved to `inputs`, `preferences` and `evaluation` leave this app's state; their
tables stay (they belong to the new apps now)."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0007_dimension_query_prompt'),
        ('evaluation', '0001_initial'),
        ('preferences', '0001_initial'),
        ('generation', '0003_inputs_app'),
        ('inputs', '0001_initial'),
        ('rewardmodel', '0003_preferences_app'),
        ('rl', '0003_inputs_and_evaluation_apps'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='task',
                    name='dimensions',
                ),
                migrations.RemoveField(
                    model_name='taskdimension',
                    name='dimension',
                ),
                migrations.AlterField(
                    model_name='dimensionpick',
                    name='dimension',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='inputs.dimension'),
                ),
                migrations.RemoveField(
                    model_name='preferencedataset',
                    name='dimensions',
                ),
                migrations.RemoveField(
                    model_name='studypick',
                    name='dimension',
                ),
                migrations.RemoveField(
                    model_name='input',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='input',
                    name='tags',
                ),
                migrations.RemoveField(
                    model_name='input',
                    name='task',
                ),
                migrations.RemoveField(
                    model_name='studyitem',
                    name='input',
                ),
                migrations.RemoveField(
                    model_name='inputimport',
                    name='created_inputs',
                ),
                migrations.RemoveField(
                    model_name='inputimport',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='preferencedataset',
                    name='annotators',
                ),
                migrations.RemoveField(
                    model_name='preferencedataset',
                    name='batches',
                ),
                migrations.RemoveField(
                    model_name='preferencedataset',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='preferencedataset',
                    name='tasks',
                ),
                migrations.RemoveField(
                    model_name='study',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='studyarm',
                    name='study',
                ),
                migrations.RemoveField(
                    model_name='studyitem',
                    name='study',
                ),
                migrations.RemoveField(
                    model_name='studyarm',
                    name='batch',
                ),
                migrations.RemoveField(
                    model_name='studycandidate',
                    name='arm',
                ),
                migrations.RemoveField(
                    model_name='studycandidate',
                    name='candidate',
                ),
                migrations.RemoveField(
                    model_name='studycandidate',
                    name='item',
                ),
                migrations.RemoveField(
                    model_name='usabilityvote',
                    name='study_candidate',
                ),
                migrations.RemoveField(
                    model_name='studypick',
                    name='worst',
                ),
                migrations.RemoveField(
                    model_name='studypick',
                    name='best',
                ),
                migrations.RemoveField(
                    model_name='studyjudgment',
                    name='item',
                ),
                migrations.RemoveField(
                    model_name='studyslot',
                    name='item',
                ),
                migrations.RemoveField(
                    model_name='studyjudgment',
                    name='annotator',
                ),
                migrations.RemoveField(
                    model_name='studyjudgment',
                    name='slot',
                ),
                migrations.RemoveField(
                    model_name='usabilityvote',
                    name='judgment',
                ),
                migrations.RemoveField(
                    model_name='studypick',
                    name='judgment',
                ),
                migrations.RemoveField(
                    model_name='studyslot',
                    name='annotator',
                ),
                migrations.RemoveField(
                    model_name='taskdimension',
                    name='task',
                ),
                migrations.AlterModelOptions(
                    name='annotationtask',
                    options={'ordering': ['pk'], 'permissions': [('annotate', 'Can judge candidate sets in the annotation pages')]},
                ),
                migrations.DeleteModel(
                    name='Dimension',
                ),
                migrations.DeleteModel(
                    name='Tag',
                ),
                migrations.DeleteModel(
                    name='Input',
                ),
                migrations.DeleteModel(
                    name='InputImport',
                ),
                migrations.DeleteModel(
                    name='PreferenceDataset',
                ),
                migrations.DeleteModel(
                    name='Study',
                ),
                migrations.DeleteModel(
                    name='StudyArm',
                ),
                migrations.DeleteModel(
                    name='StudyCandidate',
                ),
                migrations.DeleteModel(
                    name='StudyItem',
                ),
                migrations.DeleteModel(
                    name='UsabilityVote',
                ),
                migrations.DeleteModel(
                    name='StudyJudgment',
                ),
                migrations.DeleteModel(
                    name='StudyPick',
                ),
                migrations.DeleteModel(
                    name='StudySlot',
                ),
                migrations.DeleteModel(
                    name='Task',
                ),
                migrations.DeleteModel(
                    name='TaskDimension',
                ),
            ],
        ),
    ]
