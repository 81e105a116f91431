"""What a dataset version's split holds, checked before anyone trains or evaluates on it: a split
that was asked for but got no inputs, or no pairs, or too few inputs for its figures to mean much.
Inputs are assigned to splits by hash (pairing.split_of), so a small dataset can leave a 5 % split
empty by chance; the build reports it instead of letting a trainer validate on nothing."""
from __future__ import annotations

SPLITS = ("train", "validation", "test")
# Under this many inputs, an accuracy measured on the split moves by 10 points or more with one
# input more or less: the figure is reported, with a warning.
FEW_INPUTS = 10

CONSEQUENCE = {
    "train": "there is nothing to train on",
    "validation": "a reward-model run cannot validate (no validation loss or accuracy)",
    "test": "a reward model trained on it cannot be evaluated",
}


def split_warnings(fractions: dict[str, float], inputs: dict[str, int], pairs: dict[str, int]) -> list[str]:
    """One sentence per problem of the splits: `fractions` asked for, `inputs` and `pairs` each split
    got. Splits asked for with a share of 0 are left alone."""
    total = sum(inputs.values())
    warnings = []
    for split in SPLITS:
        share = fractions.get(split, 0)
        if share <= 0:
            continue
        got, pair_count = inputs.get(split, 0), pairs.get(split, 0)
        if got == 0:
            warnings.append(f"the {split} split got no inputs ({total} input{'s' if total != 1 else ''} in all, "
                            f"{share:.0%} share): {CONSEQUENCE[split]}; raise its share or add inputs")
        elif pair_count == 0:
            warnings.append(f"the {split} split got {got} input{'s' if got != 1 else ''} but no pairs: "
                            f"{CONSEQUENCE[split]}")
        elif split != "train" and got < FEW_INPUTS:
            warnings.append(f"the {split} split has only {got} input{'s' if got != 1 else ''} ({pair_count} pairs): "
                            f"figures measured on it are noisy; aim for {FEW_INPUTS} or more")
    return warnings


def pairs_per_split(counts: dict) -> dict[str, int]:
    """Pairs per split from a manifest's counts ({task: {dimension: {split: pairs}}})."""
    totals = dict.fromkeys(SPLITS, 0)
    for per_dimension in counts.values():
        for per_split in per_dimension.values():
            for split, count in per_split.items():
                totals[split] = totals.get(split, 0) + count
    return totals
