"""Shared test configuration: numpy floating-point problems are errors, not warnings."""

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _numpy_errors():
    with np.errstate(all="raise", under="ignore"):
        yield
