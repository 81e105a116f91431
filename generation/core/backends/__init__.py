"""Generator backends: the pixel work. Plain Python + torch, no Django (see base.py)."""
