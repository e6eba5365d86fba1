import os
from pathlib import Path

import pytest

# Tests trace for real: the disk cache of traced costs (wantrace.work.cache) is off unless a test turns it on,
# for this process and every CLI it starts.
os.environ["WANTRACE_CACHE"] = "off"

# The diffusers and transformers cross-checks load tqdm, whose monitor thread would outlive them; with another
# thread running, the whole generation no longer forks its VAE trace (wantrace.work.beside) for the tests after.
try:
    import tqdm

    tqdm.tqdm.monitor_interval = 0
except ImportError:  # pragma: no cover
    pass

from wan_reference import load_config

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS


def config_of(name: str):
    return load_config(MODELS / name / "config.json")
