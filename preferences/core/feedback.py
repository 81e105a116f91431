"""Implicit feedback from production: what users did with an edit (accepted, published, re-edited,
discarded), read from JSONL or CSV and turned into weak preference pairs.

A row names one event:
    source       where it comes from (e.g. "editor-web"); with external_id, the event's identity,
                 so importing the same file twice stores nothing new
    external_id  the event's id in that source
    event        accepted | published | re_edited | discarded
    candidate    the public id of a candidate the platform generated, or
    input + image  an input id and an outside image (base64 PNG/JPEG; JSONL and the API only)
    occurred_at  ISO 8601, optional

Weak pairs, per input: every image's latest event gives it a rank (published and accepted 2,
re-edited 1, discarded 0), and each image beats every image of the same input with a lower rank.
Plain Python: no Django.
"""
from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations

EVENT_RANK = {"published": 2, "accepted": 2, "re_edited": 1, "discarded": 0}
EVENTS = tuple(EVENT_RANK)
FIELDS = ("source", "external_id", "event", "candidate", "input", "image", "occurred_at")
MAX_SOURCE = 100
MAX_EXTERNAL_ID = 200


class FeedbackProblem(ValueError):
    def __init__(self, line: int, problem: str):
        super().__init__(f"line {line}: {problem}")
        self.line, self.problem = line, problem

    def as_dict(self) -> dict:
        return {"line": self.line, "problem": self.problem}


@dataclass(frozen=True)
class EventRow:
    line: int
    source: str
    external_id: str
    event: str
    candidate: str | None  # public id
    input_id: int | None
    image: bytes | None
    occurred_at: datetime | None


def read_rows(data: bytes, name: str) -> list[tuple[int, dict]]:
    """(line, raw row) from a .jsonl or .csv file; FeedbackProblem for a line that is not a row."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FeedbackProblem(1, f"{name} is not UTF-8 text") from None
    if name.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        unknown = set(reader.fieldnames or []) - set(FIELDS)
        if unknown:
            raise FeedbackProblem(1, f"unknown column(s) {', '.join(sorted(unknown))}; the columns are "
                                     f"{', '.join(FIELDS)}")
        return [(number, {k: v for k, v in row.items() if v not in (None, "")})
                for number, row in enumerate(reader, start=2)]
    if not name.lower().endswith((".jsonl", ".ndjson", ".json")):
        raise FeedbackProblem(1, f"{name}: give a .jsonl or .csv file")
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FeedbackProblem(number, f"not JSON ({exc.msg})") from None
        rows.append((number, row))
    return rows


def check_row(line: int, raw, default_source: str = "") -> EventRow:
    """One event, checked; FeedbackProblem names what is wrong. Does not look up the candidate or
    the input (the caller does, against the database)."""
    if not isinstance(raw, dict):
        raise FeedbackProblem(line, "each row must be an object of " + ", ".join(FIELDS))
    unknown = set(raw) - set(FIELDS)
    if unknown:
        raise FeedbackProblem(line, f"unknown field(s) {', '.join(sorted(unknown))}")
    source = str(raw.get("source") or default_source).strip()
    if not source or len(source) > MAX_SOURCE:
        raise FeedbackProblem(line, f"source is required (at most {MAX_SOURCE} characters)")
    external_id = str(raw.get("external_id") or "").strip()
    if not external_id or len(external_id) > MAX_EXTERNAL_ID:
        raise FeedbackProblem(line, f"external_id is required (at most {MAX_EXTERNAL_ID} characters)")
    event = str(raw.get("event") or "").strip().lower().replace("-", "_")
    if event not in EVENT_RANK:
        raise FeedbackProblem(line, f"event {raw.get('event')!r} is not one of {', '.join(EVENTS)}")
    candidate = str(raw["candidate"]).strip() if raw.get("candidate") not in (None, "") else None
    input_id = raw.get("input")
    image = raw.get("image")
    if candidate and (input_id not in (None, "") or image):
        raise FeedbackProblem(line, "give either a candidate or an input with an outside image, not both")
    if not candidate:
        if input_id in (None, "") or not image:
            raise FeedbackProblem(line, "give a candidate (its public id) or an input id with an outside image")
        try:
            input_id = int(input_id)
        except (TypeError, ValueError):
            raise FeedbackProblem(line, f"input {input_id!r} is not an input id") from None
        if input_id < 1 or input_id > 2**31 - 1:
            raise FeedbackProblem(line, f"input {input_id} is not an input id")
        try:
            image = base64.b64decode(str(image), validate=True)
        except (binascii.Error, ValueError):
            raise FeedbackProblem(line, "image must be base64 (a PNG or JPEG file)") from None
    else:
        input_id, image = None, None
    occurred_at = None
    if raw.get("occurred_at"):
        try:
            occurred_at = datetime.fromisoformat(str(raw["occurred_at"]).replace("Z", "+00:00"))
        except ValueError:
            raise FeedbackProblem(line, f"occurred_at {raw['occurred_at']!r} is not an ISO 8601 time") from None
    return EventRow(line, source, external_id, event, candidate, input_id, image, occurred_at)


@dataclass(frozen=True)
class WeakPair:
    winner: object  # the caller's key of an image
    loser: object
    source: str  # the winner's event source (the loser's when they differ: "a+b")


def weak_pairs(events: list[tuple[object, str, str, object]]) -> list[WeakPair]:
    """events of ONE input: (image key, event, source, order key). The latest event per image
    (largest order key) ranks it; each image beats every lower-ranked one."""
    latest: dict = {}
    for key, event, source, order in events:
        if key not in latest or order > latest[key][2]:
            latest[key] = (event, source, order)
    pairs = []
    for (a, (event_a, source_a, _)), (b, (event_b, source_b, _)) in combinations(sorted(latest.items(), key=str), 2):
        if EVENT_RANK[event_a] == EVENT_RANK[event_b]:
            continue
        winner, loser = (a, b) if EVENT_RANK[event_a] > EVENT_RANK[event_b] else (b, a)
        sources = sorted({source_a, source_b})
        pairs.append(WeakPair(winner, loser, "+".join(sources)))
    return pairs
