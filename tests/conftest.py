from pathlib import Path

import pytest

from wan_reference import load_config

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS


def config_of(name: str):
    return load_config(MODELS / name / "config.json")
