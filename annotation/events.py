"""Signals other apps answer, so that annotation never imports them."""
from django.dispatch import Signal

# Asked when a finished candidate set of an annotation batch is about to become a task; kwargs:
# batch. A receiver that returns True holds the batch's tasks: whoever launched the batch opens
# them itself, in an order of its own (a collection round opens them in its strategy's order,
# rl/rounds.py), and no task is made for the set now.
holds_tasks = Signal()
