"""Front tests run the tiny model: one torch thread (thread hand-offs dominate its
microsecond matmuls on a shared 2-core machine; measured by the align tests too)."""

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
