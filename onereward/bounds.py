"""The ranges of the integers clients send to the API, so that every value is refused by its own
field (a 400 naming it) and none reaches the database out of range.

Model serializers take their fields' ranges from the database (a PositiveSmallIntegerField is
0 … 32767 on PostgreSQL); fields declared by hand name their range from here. Seeds have one range
whatever their column: 0 … 2**31 - 1, which every library of the loop takes (numpy and accelerate's
set_seed refuse a negative seed or one of 2**32 or more)."""

SMALLINT_MAX = 2**15 - 1  # PostgreSQL smallint: a PositiveSmallIntegerField
INTEGER_MAX = 2**31 - 1  # PostgreSQL integer: a PositiveIntegerField
SEED_RANGE = {"min_value": 0, "max_value": INTEGER_MAX}
