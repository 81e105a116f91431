"""`manage.py demo_loop` runs the documented sequence on the demo models, in this process, through
the product's own code, and prints each stage's figures."""
import re

import pytest
from django.core.management import call_command

from annotation.models import Judgment
from evaluation.models import StudyJudgment
from rl.models import PolicyCheckpoint

pytestmark = pytest.mark.django_db


def test_the_demo_loop_runs_from_inputs_to_the_study_report(tmp_path, settings, capsys):
    settings.DATA_DIR = tmp_path
    settings.ONEREWARD_DEMO_MODELS_DIR = tmp_path / "demo-models"
    call_command("demo_loop", "--candidates", "2", "--steps", "2", "--rl-steps", "2", "--annotators", "2")
    out = capsys.readouterr().out
    stages = re.findall(r"^\[\s*[\d.]+ s\] ([a-z A-Z]+):", out, re.MULTILINE)
    assert stages == ["seed", "inputs", "generation", "annotation", "dataset", "reward model", "RL",
                      "evaluation batches", "study"], out
    assert Judgment.objects.filter(annotator__simulated_annotator__oracle="brightness").exists()
    checkpoint = PolicyCheckpoint.objects.get()
    assert checkpoint.generator.settings["loras"] and checkpoint.study is not None
    assert StudyJudgment.objects.filter(item__study=checkpoint.study).count() > 0
    assert "policy vs base" in out
