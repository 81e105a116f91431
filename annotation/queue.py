"""One queue for everything an annotator is handed: annotation task slots and study item slots.

A slot is free (open, or leased with the lease run out), leased to one annotator until a time, or
done. Free slots are taken with SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL), so concurrent
annotators never get the same one and none waits on another; SQLite has no row locks, and its
IMMEDIATE transactions (settings) serialise the same code. An annotator's own lease is renewed
under a plain row lock, so a colleague taking it over (its lease ran out) and the renewal never
cross. Both slot models use the same state values and fields (annotator, state, assigned_at,
leased_until, shown_order); the callers pass querysets, so each keeps its own filters and joins.
"""
import hashlib
import hmac
import random
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from .models import AnnotatorStatus, SlotState

OPEN, LEASED = SlotState.OPEN.value, SlotState.LEASED.value
# Two requests of one annotator (a prefetch and a reload) may take two slots of the same task or
# item at once; the unique (task or item, annotator) key refuses the second, which then tries again
# with a fresh view of what the annotator holds. Three tries: each refusal needs a concurrent win.
HAND_OUT_TRIES = 3

T = TypeVar("T")


class AnnotatorPaused(Exception):
    """The annotator may not take work; the message says why."""


def ensure_not_paused(user) -> None:
    status = AnnotatorStatus.objects.filter(user=user, paused=True).first()
    if status is not None:
        raise AnnotatorPaused(status.reason or "your account is paused; ask an admin")


# --- the shown order --------------------------------------------------------------------------------


def order_secret() -> bytes:
    """The key of every shown order: ONEREWARD_ORDER_SECRET, else one derived from SECRET_KEY."""
    if settings.ONEREWARD_ORDER_SECRET:
        return settings.ONEREWARD_ORDER_SECRET.encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"onereward shown order", hashlib.sha256).digest()


def order_seed(*parts) -> int:
    """The seed of an annotator's shuffle of one task or item: an HMAC of the ids under the server's
    secret, so that nobody who knows the ids (an annotator knows theirs and the item's) can tell
    which candidate sits where. Orders already shown are stored with their slots and keep their
    meaning when the secret changes."""
    message = ":".join(str(part) for part in parts).encode()
    return int.from_bytes(hmac.new(order_secret(), message, hashlib.sha256).digest()[:8], "big")


def shuffled(members: Iterable, seed: int) -> list:
    """`members` in the left-to-right order shown: sorted first, so the order depends on the seed
    alone and not on how the members were read."""
    order = sorted(members)
    random.Random(seed).shuffle(order)
    return order


# --- leases -----------------------------------------------------------------------------------------


def free(slots, now):
    """The slots of `slots` that may be handed out: open, or leased with the lease run out."""
    return slots.filter(state__in=[OPEN, LEASED]).filter(Q(state=OPEN) | Q(leased_until__lte=now))


def lease_end(now, minutes: int):
    return now + timedelta(minutes=minutes)


def resume(mine, now, minutes: int):
    """The oldest of the annotator's leases in `mine`, renewed to the full lease time from now (a
    reload resumes it); None when there is none. Locked, not skipped: the renewal waits for a
    colleague's hand-out that is taking the slot over, and then no longer finds it ours."""
    if connection.features.has_select_for_update:
        mine = mine.select_for_update(of=("self",))
    current = mine.order_by("assigned_at", "pk").first()
    if current is None:
        return None
    current.leased_until = lease_end(now, minutes)
    type(current).objects.filter(pk=current.pk).update(leased_until=current.leased_until)
    return current


def take(free_slots) -> int | None:
    """The id of the first slot of `free_slots` (ordered by the caller) that no concurrent hand-out
    holds, locked until the transaction ends. The slot row alone is locked (no joins)."""
    ids = free_slots.values_list("pk", flat=True)
    if connection.features.has_select_for_update_skip_locked:
        ids = ids.select_for_update(skip_locked=True, of=("self",))
    return ids.first()


def lease(slot, annotator, now, minutes: int, shown_order: list):
    """Lease `slot` (taken with `take`, or made for this annotator) to `annotator`."""
    slot.annotator = annotator
    slot.state = LEASED
    slot.assigned_at = now
    slot.leased_until = lease_end(now, minutes)
    slot.shown_order = shown_order
    slot.save(update_fields=["annotator", "state", "assigned_at", "leased_until", "shown_order"])
    return slot


def hand_out(annotator, attempt: Callable[[], T]) -> T | None:
    """Run `attempt` (resume, else take and lease) in a transaction of its own, one at a time per
    annotator: the annotator's user row is locked first, so simultaneous requests of one annotator
    (a double click, several tabs) queue up and the later ones resume the lease the first one made
    instead of each taking a slot. Tried again if it still broke the one-slot-per-annotator key."""
    for _ in range(HAND_OUT_TRIES):
        try:
            with transaction.atomic():
                get_user_model().objects.select_for_update().filter(pk=annotator.pk).values_list("pk").first()
                return attempt()
        except IntegrityError:
            continue
    return None
