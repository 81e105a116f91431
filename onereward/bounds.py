"""The ranges of the integers clients send to the API, so that every value is refused by its own
field (a 400 naming it) and none reaches the database out of range.

Model serializers take their fields' ranges from the database (a PositiveSmallIntegerField is
0 … 32767 on PostgreSQL); fields declared by hand name their range from here. Seeds have one range
whatever their column: 0 … 2**31 - 1, which every library of the loop takes (numpy and accelerate's
set_seed refuse a negative seed or one of 2**32 or more)."""

SMALLINT_MAX = 2**15 - 1  # PostgreSQL smallint: a PositiveSmallIntegerField
INTEGER_MAX = 2**31 - 1  # PostgreSQL integer: a PositiveIntegerField
SEED_RANGE = {"min_value": 0, "max_value": INTEGER_MAX}
SEED_MESSAGE = (f"a seed is a whole number from 0 to {INTEGER_MAX} (2**31 - 1), the range numpy and accelerate's "
                "set_seed take")


def seed_errors(value) -> list[str]:
    """[SEED_MESSAGE] for a seed out of SEED_RANGE (None is left to the field's own rule)."""
    return [SEED_MESSAGE] if value is not None and not 0 <= value <= INTEGER_MAX else []


class SeedBounds:
    """A form mixin: the fields named in `seed_fields` take SEED_RANGE, refused with SEED_MESSAGE
    (a model form's seed columns are bigint, wider than any library's seed)."""

    seed_fields = ("seed",)

    def __init__(self, *args, **kwargs):
        from django.core.validators import MaxValueValidator, MinValueValidator

        super().__init__(*args, **kwargs)
        for name in self.seed_fields:
            field = self.fields.get(name)
            if field is None:
                continue
            field.min_value, field.max_value = SEED_RANGE["min_value"], SEED_RANGE["max_value"]
            field.validators = [v for v in field.validators if not isinstance(v, (MinValueValidator,
                                                                                  MaxValueValidator))]
            field.validators += [MinValueValidator(field.min_value, message=SEED_MESSAGE),
                                 MaxValueValidator(field.max_value, message=SEED_MESSAGE)]
            field.widget.attrs.update({"min": field.min_value, "max": field.max_value})
