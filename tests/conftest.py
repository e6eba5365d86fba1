import os
from pathlib import Path

import pytest

# Tests trace for real: the disk cache of traced costs (wantrace.work.cache) is off unless a test turns it on,
# for this process and every CLI it starts.
os.environ["WANTRACE_CACHE"] = "off"

from wan_reference import load_config

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS


def config_of(name: str):
    return load_config(MODELS / name / "config.json")
