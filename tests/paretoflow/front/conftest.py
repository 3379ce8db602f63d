"""Front tests run the tiny model: one torch thread (thread hand-offs dominate its
microsecond matmuls on a shared 2-core machine; measured by the align tests too)."""

import pytest


@pytest.fixture(autouse=True)
def _tiny_model_threads(one_torch_thread):  # fixture in tests/conftest.py
    yield
