"""Test-wide settings: keep the prediction cache out of the user's home."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_prediction_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDSAM2_BENCH_CACHE", str(tmp_path_factory.mktemp("prediction-cache")))
        yield
