"""Fill a separate PostgreSQL database with a large annotation world for the annotation benchmarks.

    .venv/bin/python bench/annotation_data.py                          # onereward_bench: 100k sets, 1M judgments
    .venv/bin/python bench/annotation_data.py --database onereward_bench_empty --sets 2000 --judgments 0 \
        --expired-leases 0
    .venv/bin/python bench/annotation_data.py --reset                  # drop the database and fill it again

Creates the database if it is missing and runs `migrate` on it, then loads, each stage in one
transaction, with COPY (psycopg's cursor.copy) and explicit ids:

  500 annotators (group Annotators), one generator and batch (N=4, k=11), 100,000 inputs
  (image_fill, prompt given: 4 dimensions) whose files are 8 small PNGs shared by all rows, 100,000
  candidate sets with 400,000 candidates (8 shared PNGs), 100,000 annotation tasks (1% gold), their
  1,100,000 regular slots plus the gold and repeat slots that were judged, 1,000,000 judgments
  (98% regular, 1% gold, 1% repeat) and 4,000,000 dimension picks (random, except that gold
  judgments give the gold answers for 90% of their dimensions, as careful annotators would).

History layout (see annotation_common.Layout): the queue hands out slots in task order, so the
first 89,090 regular tasks are complete (11 judgments), one has 10, and the last 9,909 regular
tasks are untouched: 109,000 open regular slots, of which the first 200 hold expired leases. Gold
tasks' own regular slots (11,000) stay open and are never handed out.

During a stage the loaded table's secondary indexes, unique and foreign-key constraints are dropped
and re-created (which validates every foreign key) inside the same transaction, so an interrupted
run leaves the table as it was. A stage whose table already holds its rows is skipped; a database
filled before (the bench batch is marked done) is left as it is. Prints the time each stage took.
"""
from __future__ import annotations

import argparse
import array
import hashlib
import json
import random
import sys
import time
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotation_common import (  # noqa: E402
    BATCH_NAME,
    FULL_DB,
    MEDIA_ROOT,
    PASSWORD,
    USERNAME,
    Layout,
    create_database,
    setup_django,
)

KIND_CODES = {0: "regular", 1: "gold", 2: "repeat"}
FILES = 8  # distinct stored images of each kind, shared by all rows
IMAGE_SIZE = 256


def say(text: str) -> None:
    print(text, flush=True)


# --- files ----------------------------------------------------------------------------------


def write_files(media_root: Path) -> float:
    """A handful of small PNG/JPEG files the rows point at; returns the inputs' mask coverage."""
    import numpy as np
    from PIL import Image

    size = IMAGE_SIZE
    y, x = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    for kind in ("inputs", "candidates"):
        (media_root / "bench" / kind).mkdir(parents=True, exist_ok=True)
    for f in range(FILES):
        rng = np.random.default_rng(f)
        base = np.stack([x * 255 / (size - 1), y * 255 / (size - 1), np.full_like(x, 40.0 * f % 255)], axis=-1)
        for kind, prefix in (("inputs", "source"), ("candidates", "candidate")):
            image = Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8), "RGB")
            png = media_root / "bench" / kind / f"{prefix}-{f}.png"
            if not png.exists():
                image.save(png)
            thumb = png.with_suffix(".jpg")
            if not thumb.exists():
                image.resize((128, 128)).save(thumb, quality=85)
        mask_path = media_root / "bench" / "inputs" / f"mask-{f}.png"
        if not mask_path.exists():
            Image.fromarray(mask, "L").save(mask_path)
    return float((mask > 0).mean())


# --- bulk loading ---------------------------------------------------------------------------


def table_count(cur, table: str) -> int:
    cur.execute(f"SELECT count(*) FROM {table}")
    return cur.fetchone()[0]


def drop_secondary(cur, table: str) -> list[str]:
    """Drop the table's secondary indexes and its unique and foreign-key constraints; return the
    statements that put them back (run them in the same transaction)."""
    cur.execute(
        "SELECT conname, pg_get_constraintdef(oid), contype FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('f', 'u') ORDER BY contype DESC, conname", [table])
    constraints = cur.fetchall()
    cur.execute(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary AND NOT EXISTS ("
        "  SELECT 1 FROM pg_constraint c WHERE c.conrelid = x.indrelid AND c.conindid = x.indexrelid "
        "  AND c.contype IN ('p', 'u', 'x')) ORDER BY i.relname", [table])
    indexes = cur.fetchall()
    for name, _, _ in constraints:
        cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cur.execute(f'DROP INDEX "{name}"')
    restore = [definition for _, definition in indexes]
    # unique constraints before foreign keys ('u' sorts after 'f', hence the DESC above, reversed here)
    for name, definition, _ in sorted(constraints, key=lambda c: c[2] != "u"):
        restore.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    return restore


def load_table(connection, table: str, columns: list[str], rows, expected: int) -> None:
    """COPY `rows` into an empty `table` in one transaction; skip when it already holds `expected` rows."""
    with connection.cursor() as cur:
        existing = table_count(cur, table)
    if existing == expected:
        say(f"  {table}: {existing:,} rows already there, skipped")
        return
    if existing:
        sys.exit(f"{table} holds {existing:,} rows, not 0 or {expected:,}: run again with --reset")
    from django.db import transaction

    raw = connection.connection  # the psycopg connection under Django's
    start = time.perf_counter()

    with transaction.atomic():
        with raw.cursor() as cur:
            cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
            cur.execute("SET LOCAL synchronous_commit = off")
            restore = drop_secondary(cur, table)
            count = 0
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
            copied = time.perf_counter()
            for statement in restore:
                cur.execute(statement)
            if count != expected:
                raise RuntimeError(f"{table}: generated {count} rows, expected {expected}")
    end = time.perf_counter()
    say(f"  {table}: {count:,} rows in {end - start:.1f} s (copy {copied - start:.1f} s, "
        f"{len(restore)} indexes/constraints rebuilt and checked in {end - copied:.1f} s)")


def reset_sequences(connection, tables: list[str]) -> None:
    with connection.cursor() as cur:
        for table in tables:
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")


# --- the plan of the judged history ----------------------------------------------------------


class History:
    """Every judgment to load, in id order, as compact arrays: kind code, task index, annotator
    index, slot id, time offset (seconds before the end of the period) and dwell."""

    def __init__(self, layout: Layout, annotator_ids: list[int], end: datetime, days: int = 90):
        from annotation.assignment import shown_order

        self.layout = layout
        self.end = end
        self.kind = array.array("b")
        self.task = array.array("i")
        self.annotator = array.array("i")
        self.slot = array.array("q")
        self.seconds = array.array("d")  # submitted_at = end - seconds
        self.dwell = array.array("i")
        self.order = []  # shown_order per judgment, as the JSON text stored
        period = days * 86400.0
        k, A = layout.k, layout.annotators
        regular = layout.regular_tasks
        gold = layout.gold_tasks
        R = layout.regular_judgments
        done_by = [array.array("i") for _ in range(A)]  # regular judgment numbers per annotator
        orders: dict[tuple, str] = {}

        def add(kind_code, i, a, slot_id, seconds_before):
            x = len(self.kind)
            order = shown_order(annotator_ids[a], i + 1, KIND_CODES[kind_code], layout.n)
            key = tuple(order)
            self.kind.append(kind_code)
            self.task.append(i)
            self.annotator.append(a)
            self.slot.append(slot_id)
            self.seconds.append(seconds_before)
            self.dwell.append(4000 + (x * 2654435761) % 56000)
            self.order.append(orders.setdefault(key, json.dumps(order)))

        for x in range(R):
            r, j = divmod(x, k)
            a = (r * k + j) % A
            done_by[a].append(x)
            add(0, regular[r], a, layout.regular_slot_id(regular[r], j), period * (1 - x / R) + 3600)
        for g in range(layout.gold_judgments):
            a, m = g % A, g // A
            i = gold[(a + m) % len(gold)]
            add(1, i, a, layout.gold_slot_id(g), period * (1 - g / max(1, layout.gold_judgments)) + 3600)
        per_annotator = -(-layout.repeat_judgments // A) if layout.repeat_judgments else 1
        for q in range(layout.repeat_judgments):
            a, m = q % A, q // A
            mine = done_by[a]
            x = mine[m * (len(mine) // per_annotator)]
            r, j = divmod(x, k)
            original = period * (1 - x / R) + 3600
            add(2, regular[r], a, layout.repeat_slot_id(q), max(60.0, original - 3600 * (1 + q % 24)))

    def __len__(self):
        return len(self.kind)

    def submitted_at(self, x: int) -> datetime:
        return self.end - timedelta(seconds=self.seconds[x])

    def assigned_at(self, x: int) -> datetime:
        return self.end - timedelta(seconds=self.seconds[x] + self.dwell[x] / 1000)


# --- stages ---------------------------------------------------------------------------------


def ensure_users(layout: Layout) -> list[int]:
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User

    names = [USERNAME.format(a) for a in range(layout.annotators)]
    have = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    missing = [name for name in names if name not in have]
    if missing:
        password = make_password(PASSWORD)  # hashed once, shared: hashing 500 times takes minutes
        User.objects.bulk_create([User(username=name, password=password) for name in missing], batch_size=1000)
    ids = dict(User.objects.filter(username__in=names).values_list("username", "id"))
    group = Group.objects.get(name="Annotators")
    through = User.groups.through
    through.objects.bulk_create(
        [through(user_id=ids[name], group_id=group.pk) for name in names], ignore_conflicts=True
    )
    say(f"  annotators: {len(missing)} created, {len(names)} in group {group.name}")
    return [ids[name] for name in names]


def ensure_batch(layout: Layout):
    from generation.models import GenerationBatch, Generator

    generator, _ = Generator.objects.get_or_create(
        name="bench generator", defaults={"backend": "cpu_baseline", "settings": {}}
    )
    batch, _ = GenerationBatch.objects.get_or_create(
        name=BATCH_NAME,
        defaults={"generator": generator, "candidates_per_input": layout.n, "annotation_overlap": layout.k,
                  "status": "running", "progress_total": layout.sets, "progress_done": layout.sets},
    )
    if batch.candidates_per_input != layout.n or batch.annotation_overlap != layout.k:
        sys.exit(f"the bench batch has N={batch.candidates_per_input}, k={batch.annotation_overlap}; run with --reset")
    return batch


def fill(layout: Layout) -> None:
    from django.db import connection

    from inputs.models import Task

    total_start = time.perf_counter()
    end = datetime.now(dt_timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    start_of_data = end - timedelta(days=120)
    say("stage: annotators, generator, batch, files")
    annotator_ids = ensure_users(layout)
    batch = ensure_batch(layout)
    coverage = write_files(MEDIA_ROOT)
    task = Task.objects.get(slug="image_fill")
    dimensions = [d.pk for d in task.judged_dimensions(prompt_given=True)]
    dimension_slugs = [d.slug for d in task.judged_dimensions(prompt_given=True)]
    S, n, k = layout.sets, layout.n, layout.k

    say("stage: inputs")
    load_table(
        connection,
        "annotation_input",
        [
            "id",
            "task_id",
            "prompt",
            "source",
            "mask",
            "thumbnail",
            "width",
            "height",
            "mask_coverage",
            "content_hash",
            "original_name",
            "metadata",
            "created_at",
        ],
        (
            (
                i + 1,
                task.pk,
                f"a red bicycle leaning on a wall, number {i}",
                f"bench/inputs/source-{i % FILES}.png",
                f"bench/inputs/mask-{i % FILES}.png",
                f"bench/inputs/source-{i % FILES}.jpg",
                IMAGE_SIZE,
                IMAGE_SIZE,
                coverage,
                hashlib.sha256(f"bench input {i}".encode()).hexdigest(),
                f"bench-{i:06d}.png",
                "{}",
                start_of_data + timedelta(seconds=i),
            )
            for i in range(S)
        ),
        S,
    )

    say("stage: candidate sets")
    load_table(connection, "generation_candidateset",
               ["id", "batch_id", "input_id", "status", "error", "attempts", "worker", "claimed_at", "finished_at"],
               ((i + 1, batch.pk, i + 1, "done", "", 1, "bench", start_of_data + timedelta(seconds=i),
                 start_of_data + timedelta(seconds=i + 40)) for i in range(S)), S)

    say("stage: candidates")
    settings_json = [json.dumps({"seed": s, "steps": 28, "guidance": 30.0, "true_cfg": 1.0, "negative_prompt": "",
                                 "strength": 1.0, "extra": {}}) for s in range(n)]
    load_table(
        connection,
        "generation_candidate",
        ["id", "candidate_set_id", "index", "public_id", "image", "thumbnail", "settings", "seconds", "created_at"],
        (
            (
                layout.candidate_id(i, c),
                i + 1,
                c,
                uuid.uuid4(),
                f"bench/candidates/candidate-{(i + c) % FILES}.png",
                f"bench/candidates/candidate-{(i + c) % FILES}.jpg",
                settings_json[c],
                9.5,
                start_of_data + timedelta(seconds=i + 40),
            )
            for i in range(S)
            for c in range(n)
        ),
        S * n,
    )

    say("stage: history plan (who judged what, shown orders)")
    t = time.perf_counter()
    history = History(layout, annotator_ids, end)
    say(f"  {len(history):,} judgments planned in {time.perf_counter() - t:.1f} s "
        f"({layout.regular_judgments:,} regular, {layout.gold_judgments:,} gold, {layout.repeat_judgments:,} repeat)")
    regular = layout.regular_tasks
    done_regular = [0] * S
    for r, i in enumerate(regular):
        done_regular[i] = max(0, min(k, layout.regular_judgments - r * k))

    say("stage: annotation tasks")
    gold_answers = json.dumps({slug: {"best": 0, "worst": n - 1} for slug in dimension_slugs})
    load_table(
        connection,
        "annotation_annotationtask",
        ["id", "candidate_set_id", "required_judgments", "judgments_done", "is_gold", "gold_answers", "created_at"],
        (
            (
                i + 1,
                i + 1,
                k,
                done_regular[i],
                layout.is_gold(i),
                gold_answers if layout.is_gold(i) else "{}",
                start_of_data + timedelta(seconds=i + 60),
            )
            for i in range(S)
        ),
        S,
    )

    say("stage: slots")
    # the slot of each regular judgment: slot id -> judgment number
    judged = {}
    for x in range(len(history)):
        judged[history.slot[x]] = x
    from annotation.assignment import shown_order

    expired_until, expired_at = end - timedelta(hours=1), end - timedelta(hours=1, minutes=20)

    def slot_rows(judged=judged):  # bound here: the name is deleted below, once the rows are loaded
        expired_left = layout.expired_leases
        for r, i in enumerate(regular + layout.gold_tasks):
            gold_task = layout.is_gold(i)
            for j in range(k):
                slot_id = layout.regular_slot_id(i, j)
                x = judged.get(slot_id)
                if x is not None:
                    yield (slot_id, i + 1, "regular", "done", annotator_ids[history.annotator[x]], None,
                           history.assigned_at(x), history.order[x])
                elif not gold_task and expired_left > 0:
                    # a lease that ran out: an annotator opened the task and left
                    expired_left -= 1
                    a = annotator_ids[(r * k + j) % layout.annotators]
                    yield (slot_id, i + 1, "regular", "leased", a, expired_until, expired_at,
                           json.dumps(shown_order(a, i + 1, "regular", n)))
                else:
                    yield (slot_id, i + 1, "regular", "open", None, None, None, "[]")
        for x in range(layout.regular_judgments, len(history)):
            yield (history.slot[x], history.task[x] + 1, KIND_CODES[history.kind[x]], "done",
                   annotator_ids[history.annotator[x]], None, history.assigned_at(x), history.order[x])

    slots_total = S * k + layout.gold_judgments + layout.repeat_judgments
    load_table(connection, "annotation_slot",
               ["id", "task_id", "kind", "state", "annotator_id", "leased_until", "assigned_at", "shown_order"],
               slot_rows(), slots_total)
    del judged

    say("stage: judgments")
    load_table(connection, "annotation_judgment",
               ["id", "slot_id", "task_id", "annotator_id", "kind", "shown_order", "submission_id", "dwell_ms",
                "assigned_at", "submitted_at"],
               ((x + 1, history.slot[x], history.task[x] + 1, annotator_ids[history.annotator[x]],
                 KIND_CODES[history.kind[x]], history.order[x], uuid.uuid4(), history.dwell[x],
                 history.assigned_at(x), history.submitted_at(x)) for x in range(len(history))), len(history))

    say("stage: dimension picks")
    D = len(dimensions)
    pairs = [(b, w) for b in range(n) for w in range(n) if b != w]
    orders = {}

    def pick_rows():
        rng = random.Random(20250101)
        choice, rand = rng.choice, rng.random
        for x in range(len(history)):
            order = orders.get(history.order[x])
            if order is None:
                order = orders[history.order[x]] = json.loads(history.order[x])
            first = history.task[x] * n + 1
            gold = history.kind[x] == 1
            for d in range(D):
                pid = x * D + d + 1
                if gold and rand() < 0.9:
                    # gold answers (best: candidate 0, worst: candidate n-1), right 90% of the time
                    b, w = order.index(0), order.index(n - 1)
                    yield (pid, x + 1, dimensions[d], first + order[b], first + order[w], b, w, False)
                elif rand() < 0.05:
                    yield (pid, x + 1, dimensions[d], None, None, None, None, True)
                else:
                    b, w = choice(pairs)
                    yield (pid, x + 1, dimensions[d], first + order[b], first + order[w], b, w, False)

    load_table(
        connection,
        "annotation_dimensionpick",
        ["id", "judgment_id", "dimension_id", "best_id", "worst_id", "best_position", "worst_position", "discarded"],
        pick_rows(),
        len(history) * D,
    )

    reset_sequences(connection, ["annotation_input", "generation_candidateset", "generation_candidate",
                                 "annotation_annotationtask", "annotation_slot", "annotation_judgment",
                                 "annotation_dimensionpick"])
    loaded = time.perf_counter()
    say("stage: VACUUM ANALYZE (statistics and visibility map, as autovacuum would leave them)")
    with connection.cursor() as cur:
        for table in (
            "annotation_input",
            "generation_candidateset",
            "generation_candidate",
            "annotation_annotationtask",
            "annotation_slot",
            "annotation_judgment",
            "annotation_dimensionpick",
            "auth_user",
        ):
            cur.execute(f"VACUUM (ANALYZE) {table}")
    vacuumed = time.perf_counter()
    type(batch).objects.filter(pk=batch.pk).update(status="done", finished_at=end)
    say(f"  {vacuumed - loaded:.1f} s")
    say(
        f"filled in {vacuumed - total_start:.1f} s ({loaded - total_start:.1f} s loading, {vacuumed - loaded:.1f} s "
        "vacuum)"
    )


def report() -> None:
    from django.db import connection

    from annotation.models import AnnotationTask, DimensionPick, Judgment, Slot
    from generation.models import Candidate, CandidateSet

    with connection.cursor() as cur:
        cur.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cur.fetchone()[0]
        cur.execute("SELECT state, count(*) FROM annotation_slot WHERE kind = 'regular' GROUP BY state ORDER BY state")
        states = ", ".join(f"{state} {count:,}" for state, count in cur.fetchall())
    say(f"database {connection.settings_dict['NAME']} ({size}): {CandidateSet.objects.count():,} candidate sets, "
        f"{Candidate.objects.count():,} candidates, {AnnotationTask.objects.count():,} tasks "
        f"({AnnotationTask.objects.filter(is_gold=True).count():,} gold), {Slot.objects.count():,} slots "
        f"(regular: {states}), {Judgment.objects.count():,} judgments, {DimensionPick.objects.count():,} picks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default=FULL_DB, help=f"database name on the bench server (default {FULL_DB})")
    parser.add_argument("--sets", type=int, default=100_000, help="candidate sets = annotation tasks")
    parser.add_argument("--n", type=int, default=4, help="candidates per set")
    parser.add_argument("--k", type=int, default=11, help="judgments wanted per regular task")
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--annotators", type=int, default=500)
    parser.add_argument("--expired-leases", type=int, default=200)
    parser.add_argument("--reset", action="store_true", help="drop the database first")
    args = parser.parse_args()
    layout = Layout(sets=args.sets, n=args.n, k=args.k, judgments=args.judgments, annotators=args.annotators,
                    expired_leases=args.expired_leases)
    layout.check()

    created = create_database(args.database, drop_first=args.reset)
    say(f"database {args.database}: {'created' if created else 'exists'}")
    setup_django(args.database)
    from annotation_common import bench_batch_done
    from django.core.management import call_command

    t = time.perf_counter()
    call_command("migrate", verbosity=0)
    say(f"migrate: {time.perf_counter() - t:.1f} s")
    if bench_batch_done():
        say("already filled (the bench batch is marked done); --reset fills it again")
    else:
        fill(layout)
    report()


if __name__ == "__main__":
    main()
