"""The synthetic corpus generator: the demo generates hundreds of videos with it."""
import random

import numpy as np

from au_core.facs import INTENSITY_AUS
from au_standins.synthetic import per_frame_json


def test_a_neutral_peak_frame_gets_no_description():
    """The peak (largest AU sum) can be a frame where no AU passes the threshold; only frames with active AUs
    are described."""
    values = np.zeros((3, len(INTENSITY_AUS)))
    values[0, :] = 0.5  # the largest sum, nothing active
    values[2, INTENSITY_AUS.index("AU12")] = 1.9
    data = per_frame_json("v", values, np.ones(3, dtype=bool), random.Random(0), n_described=4)
    assert list(data["fine_grained_descriptions"]) == ["3"]
    assert data["per_frame_au_descriptions"][0]["is_peak_frame"]
