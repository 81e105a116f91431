"""Intervals of proportions, shared by the reports (studies, the reward-hacking alarm, the bias audit)."""
import math

Z95 = 1.959963984540054


def wilson_interval(successes: float, total: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (None when there is no trial). `successes` may count a
    tie as half."""
    if total <= 0:
        return None
    p = successes / total
    z2 = z * z
    denominator = 1 + z2 / total
    centre = (p + z2 / (2 * total)) / denominator
    half = z / denominator * math.sqrt(max(0.0, p * (1 - p)) / total + z2 / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)
