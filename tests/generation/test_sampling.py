"""Randomised settings: within their ranges, reproducible from the batch seed, validated."""
import pytest

from generation.core.sampling import RangeError, Ranges


def test_draws_stay_in_range_and_are_reproducible():
    ranges = Ranges.parse({"steps": [10, 20], "guidance": [2, 3], "true_cfg": [1, 4], "strength": [0.5, 1.0],
                           "negative_prompts": ["", "nsfw"]})
    draws = [ranges.draw(7, "input-hash", i) for i in range(200)]
    assert all(
        10 <= d.steps <= 20 and 2 <= d.guidance <= 3 and 1 <= d.true_cfg <= 4 and 0.5 <= d.strength <= 1 for d in draws
    )
    assert {d.negative_prompt for d in draws} == {"", "nsfw"}
    assert len({d.steps for d in draws}) > 5 and len({d.seed for d in draws}) == 200
    assert draws == [ranges.draw(7, "input-hash", i) for i in range(200)]
    assert ranges.draw(8, "input-hash", 0) != draws[0]
    assert ranges.draw(7, "other-input", 0) != draws[0]


def test_vary_per_input_shares_settings_but_not_seeds():
    ranges = Ranges.parse({"vary": "input"})
    draws = [ranges.draw(1, "h", i) for i in range(4)]
    assert len({(d.steps, d.guidance, d.true_cfg, d.strength, d.negative_prompt) for d in draws}) == 1
    assert len({d.seed for d in draws}) == 4


def test_single_numbers_fix_a_setting():
    ranges = Ranges.parse({"steps": 28, "true_cfg": 4.0, "negative_prompts": ["nsfw"]})
    draw = ranges.draw(0, "h", 3)
    assert (draw.steps, draw.true_cfg, draw.negative_prompt) == (28, 4.0, "nsfw")
    assert Ranges.parse(ranges.as_dict()) == ranges


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"steps": [50, 28]}, "steps range is inverted: 50 > 28"),
        ({"steps": [0, 10]}, "steps must be at least 1"),
        ({"steps": [1.5, 10]}, "whole numbers"),
        ({"guidance": [5, 1]}, "guidance range is inverted"),
        ({"true_cfg": [0.5, 2]}, "true_cfg below 1"),
        ({"strength": [0.5, 1.5]}, "strength must lie in (0, 1]"),
        ({"strength": [0, 1]}, "strength must lie in (0, 1]"),
        ({"negative_prompts": []}, "negative_prompts must be a non-empty list"),
        ({"vary": "sometimes"}, "vary must be"),
        ({"stepz": [1, 2]}, "unknown range(s) ['stepz']"),
        ({"steps": "many"}, "steps must be [low, high]"),
    ],
)
def test_bad_ranges_are_named(raw, message):
    with pytest.raises(RangeError, match=__import__("re").escape(message)):
        Ranges.parse(raw)
