"""A database filled on the old layout (every model in `annotation`) migrates to one app per stage
of the loop with no table rewritten, and every row, permission and role-group grant is found
through the new apps' models."""
import re
import uuid

import psycopg
import pytest
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

# The last migration of each app before the move; the new apps did not exist.
OLD_LAYOUT = [
    ("annotation", "0007_dimension_query_prompt"),
    ("generation", "0002_batch_for_annotation"),
    ("rewardmodel", "0002_validation_history"),
    ("rl", "0002_training_history"),
    ("inputs", None),
    ("preferences", None),
    ("evaluation", None),
]
OLD_NODES = [node for node in OLD_LAYOUT if node[1]]
# The last migration of each app in the move itself; later migrations change the schema as usual.
NEW_LAYOUT = [
    ("annotation", "0009_annotate_permission_on_tasks"),
    ("generation", "0003_inputs_app"),
    ("rewardmodel", "0003_preferences_app"),
    ("rl", "0003_inputs_and_evaluation_apps"),
    ("inputs", "0001_initial"),
    ("preferences", "0001_initial"),
    ("evaluation", "0001_initial"),
]
SCHEMA_CHANGE = re.compile(r"^\s*(CREATE|ALTER|DROP|RENAME)\b", re.IGNORECASE)


@pytest.fixture
def scratch_database(django_db_blocker):
    """A PostgreSQL database of its own, outside the test database and its transaction: migrations
    run back and forth on it. It stands in as the default connection while the test runs, since the
    older data migrations write through the default manager."""
    default = connections["default"]
    params = default.get_connection_params()
    name = f"onereward_layout_{uuid.uuid4().hex[:8]}"
    admin_params = {k: v for k, v in params.items() if k in ("host", "port", "user", "password")}
    with psycopg.connect(dbname="postgres", autocommit=True, **admin_params) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    test_database = default.settings_dict["NAME"]
    with django_db_blocker.unblock():
        default.close()
        default.settings_dict["NAME"] = name
        try:
            yield default
        finally:
            default.close()
            default.settings_dict["NAME"] = test_database
            with psycopg.connect(dbname="postgres", autocommit=True, **admin_params) as admin:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def layout_targets(executor, layout) -> list:
    """`layout` for the platform's apps; Django's and the libraries' apps at their latest."""
    ours = {app for app, _ in layout}
    return [node for node in executor.loader.graph.leaf_nodes() if node[0] not in ours] + layout


def fill_old_layout(apps) -> dict:
    """One row of every moved model (and of each model pointing at one), through the old app labels."""
    old = lambda model: apps.get_model("annotation", model)  # noqa: E731
    user = apps.get_model("auth", "User").objects.create(username="ann")
    task = old("Task").objects.get(slug="image_fill")
    dimension = old("Dimension").objects.get(slug="aesthetics")
    tag = old("Tag").objects.create(name="demo")
    input_ = old("Input").objects.create(
        task=task, prompt="a red kite", source="inputs/s.png", mask="inputs/m.png", width=64, height=64,
        mask_coverage=0.25, content_hash="a" * 64)
    input_.tags.add(tag)
    job = old("InputImport").objects.create(original_name="inputs.zip")
    job.created_inputs.add(input_)
    generator = apps.get_model("generation", "Generator").objects.create(name="baseline", backend="cpu_baseline")
    batch = apps.get_model("generation", "GenerationBatch").objects.create(generator=generator)
    candidate_set = apps.get_model("generation", "CandidateSet").objects.create(batch=batch, input=input_)
    Candidate = apps.get_model("generation", "Candidate")
    candidates = [Candidate.objects.create(candidate_set=candidate_set, index=i, image=f"c{i}.png",
                                           thumbnail=f"t{i}.png", settings={}, seconds=0.1) for i in range(2)]
    annotation_task = old("AnnotationTask").objects.create(candidate_set=candidate_set)
    slot = old("Slot").objects.create(task=annotation_task, annotator=user, state="done")
    judgment = old("Judgment").objects.create(
        slot=slot, task=annotation_task, annotator=user, kind="regular", shown_order=[1, 0],
        submission_id=uuid.uuid4(), dwell_ms=900, assigned_at="2026-01-01T00:00:00Z")
    old("DimensionPick").objects.create(judgment=judgment, dimension=dimension, best=candidates[0],
                                        worst=candidates[1], best_position=1, worst_position=0)
    dataset = old("PreferenceDataset").objects.create(name="prefs", version=1)
    dataset.tasks.add(task)
    dataset.batches.add(batch)
    run = apps.get_model("rewardmodel", "RewardModelRun").objects.create(dataset=dataset, validation_history=[])
    version = apps.get_model("rewardmodel", "RewardModelVersion").objects.create(
        run=run, name="judge v1", model_path="judge", base_model="qwen", template_version=1)
    rl_run = apps.get_model("rl", "RLRun").objects.create(base_generator=generator, reward_model=version,
                                                           task_probabilities={})
    rl_run.train_tags.add(tag)
    study = old("Study").objects.create(name="A vs B")
    arm = old("StudyArm").objects.create(study=study, batch=batch, label="A")
    item = old("StudyItem").objects.create(study=study, input=input_)
    study_candidate = old("StudyCandidate").objects.create(item=item, arm=arm, candidate=candidates[0])
    study_slot = old("StudySlot").objects.create(item=item, annotator=user)
    study_judgment = old("StudyJudgment").objects.create(
        slot=study_slot, item=item, annotator=user, shown_order=[study_candidate.pk], submission_id=uuid.uuid4(),
        dwell_ms=500)
    old("UsabilityVote").objects.create(judgment=study_judgment, study_candidate=study_candidate, usable=True)
    old("StudyPick").objects.create(judgment=study_judgment, dimension=dimension, discarded=True)

    # The role groups as the old layout's post_migrate left them: `annotate` sat on Input.
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    input_type = ContentType.objects.create(app_label="annotation", model="input")
    annotate = Permission.objects.create(content_type=input_type, codename="annotate", name="Can judge")
    view_input = Permission.objects.create(content_type=input_type, codename="view_input", name="Can view input")
    group = apps.get_model("auth", "Group").objects.create(name="Annotators")
    group.permissions.add(annotate, view_input)
    return {"input": input_.pk, "dataset": dataset.pk, "study": study.pk, "view_input": view_input.pk,
            "input_type": input_type.pk, "judgment": judgment.pk}


def test_old_layout_migrates_without_rewriting_a_table(scratch_database):
    executor = MigrationExecutor(scratch_database)
    targets = layout_targets(executor, OLD_LAYOUT)
    executor.migrate(targets)
    executor.loader.build_graph()
    ids = fill_old_layout(executor.loader.project_state([node for node in targets if node[1]]).apps)

    tables_before = set(scratch_database.introspection.table_names())
    statements = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    executor = MigrationExecutor(scratch_database)
    with scratch_database.execute_wrapper(record):
        executor.migrate(layout_targets(executor, NEW_LAYOUT))
    assert [sql for sql in statements if SCHEMA_CHANGE.match(sql)] == []
    assert set(scratch_database.introspection.table_names()) == tables_before

    new = MigrationExecutor(scratch_database).loader.project_state(NEW_LAYOUT).apps
    input_ = new.get_model("inputs", "Input").objects.using(scratch_database.alias).get(pk=ids["input"])
    assert input_.prompt == "a red kite" and input_.task.slug == "image_fill"
    assert [t.name for t in input_.tags.all()] == ["demo"]
    assert (
        new.get_model("inputs", "InputImport").objects.using(scratch_database.alias).get().created_inputs.count() == 1
    )
    assert (
        new.get_model("generation", "CandidateSet").objects.using(scratch_database.alias).get().input_id == input_.pk
    )
    dataset = new.get_model("preferences", "PreferenceDataset").objects.using(scratch_database.alias).get()
    assert dataset.pk == ids["dataset"] and [t.slug for t in dataset.tasks.all()] == ["image_fill"]
    assert (
        new.get_model("rewardmodel", "RewardModelRun").objects.using(scratch_database.alias).get().dataset_id
        == dataset.pk
    )
    rl_run = new.get_model("rl", "RLRun").objects.using(scratch_database.alias).get()
    assert [t.name for t in rl_run.train_tags.all()] == ["demo"]
    study = new.get_model("evaluation", "Study").objects.using(scratch_database.alias).get()
    assert study.pk == ids["study"] and study.items.get().input_id == input_.pk
    for model in ["StudyArm", "StudyCandidate", "StudySlot", "StudyJudgment", "UsabilityVote", "StudyPick"]:
        assert new.get_model("evaluation", model).objects.using(scratch_database.alias).count() == 1, model
    pick = new.get_model("annotation", "DimensionPick").objects.using(scratch_database.alias).get()
    assert pick.judgment_id == ids["judgment"] and pick.dimension.slug == "aesthetics"
    assert (
        new.get_model("inputs", "Dimension").objects.using(scratch_database.alias).filter(slug="aesthetics").exists()
    )

    # Content types move with their models, so the groups keep their grants; `annotate` now sits on
    # annotation tasks.
    ContentType = new.get_model("contenttypes", "ContentType")
    assert ContentType.objects.using(scratch_database.alias).get(pk=ids["input_type"]).app_label == "inputs"
    group = new.get_model("auth", "Group").objects.using(scratch_database.alias).get(name="Annotators")
    grants = {(p.content_type.app_label, p.content_type.model, p.codename) for p in group.permissions.all()}
    assert grants == {("inputs", "input", "view_input"), ("annotation", "annotationtask", "annotate")}


def test_the_move_unapplies_back_to_the_old_layout(scratch_database):
    executor = MigrationExecutor(scratch_database)
    executor.migrate(layout_targets(executor, NEW_LAYOUT))
    tables = set(scratch_database.introspection.table_names())
    executor.loader.build_graph()
    executor.migrate(layout_targets(executor, OLD_LAYOUT))
    assert set(scratch_database.introspection.table_names()) == tables
    old = executor.loader.project_state(OLD_NODES).apps
    assert old.get_model("annotation", "Task").objects.using(scratch_database.alias).filter(slug="image_fill").exists()


@pytest.mark.django_db
def test_old_admin_addresses_of_moved_models_redirect(client):
    response = client.get("/admin/annotation/input/3/change/?x=1")
    assert response.status_code == 301 and response["Location"] == "/admin/inputs/input/3/change/?x=1"
    response = client.get("/admin/annotation/preferencedataset/")
    assert response["Location"] == "/admin/preferences/preferencedataset/"
    # Models that stayed are served where they were.
    assert client.get("/admin/annotation/annotationtask/").status_code == 302  # to the login page
    assert "/admin/login/" in client.get("/admin/annotation/annotationtask/")["Location"]
