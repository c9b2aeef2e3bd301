"""Seeds every test, puts the toy environments on the path, and says how to reproduce a failure."""
import os
import random
import sys

import numpy as np
import pytest


TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS_DIR)
os.environ["PYTHONPATH"] = TESTS_DIR + os.pathsep + os.environ.get("PYTHONPATH", "")


@pytest.fixture(autouse=True)
def seeded(request):
    seed = 1234
    random.seed(seed)
    np.random.seed(seed)
    try:
        import mxnet as mx

        mx.random.seed(seed)
    except ImportError:
        pass
    yield


def pytest_runtest_logreport(report):
    if report.failed and report.when == "call":
        report.sections.append(("reproduce", f"python -m pytest -q '{report.nodeid}'"))
