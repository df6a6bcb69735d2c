import pytest
import torch

from dfc_analog import DFCNetwork
from dfc_analog.learning import angle_deg  # noqa: F401  (the tests' angle between updates)


def update_vector(upd) -> list:
    return list(upd.gW) + list(upd.gb)


@pytest.fixture
def one_thread():
    """Small batched solves and the model's small minibatches spin torch's threads against
    each other on a shared 2-core machine (seconds instead of milliseconds); one thread
    suffices for them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_net():
    def make(sizes=(15, 10, 10, 5), activations=None, seed=0, dtype=torch.float64,
             feedback_init="weight_product"):
        acts = activations or ["tanh"] * (len(sizes) - 2) + ["linear"]
        gen = torch.Generator().manual_seed(seed)
        return DFCNetwork(list(sizes), acts, dtype=dtype, generator=gen,
                          feedback_init=feedback_init)
    return make


@pytest.fixture
def batch():
    def make(n_in=15, n_out=5, B=32, seed=1, dtype=torch.float64):
        gen = torch.Generator().manual_seed(seed)
        x = torch.rand(B, n_in, generator=gen, dtype=dtype) * 2 - 1
        y = torch.randn(B, n_out, generator=gen, dtype=dtype)
        return x, y
    return make
