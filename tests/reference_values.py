"""Published values the tests hold the code to, written out once."""

# MagCache's calibrated Open-Sora 1.2 table (30 steps, 29 ratios), as the paper's code publishes it
# fmt: off
OPENSORA_RATIOS = [
    0.93359, 0.96484, 0.99609, 1.0, 0.99609, 0.99609, 0.99219, 1.0, 1.0, 0.99609,
    0.99219, 1.0, 0.99219, 0.99609, 0.99219, 0.99609, 0.99609, 0.99609, 0.99219, 0.99219,
    0.99219, 0.98828, 0.98828, 0.98438, 0.98438, 0.97656, 0.97656, 0.96484, 0.96484,
]
# fmt: on
