"""Fixtures for reward tests: the offline datasets in ../shared/data (beside the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the offline datasets are expected at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA
