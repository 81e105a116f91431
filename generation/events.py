"""Signals other apps listen to, so that generation never imports them."""
from django.dispatch import Signal

# Sent once when a batch's last set is done or failed and the batch turns "done"; kwargs: batch.
batch_finished = Signal()

# Sent when a candidate set has all its candidates (status done); kwargs: candidate_set.
candidate_set_finished = Signal()
