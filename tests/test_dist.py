"""pipeline.dist fallbacks; 2-process DDP SupCon reproducing the 1-process loss and gradients."""

import os
import socket

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from pipeline import dist
from pipeline.losses import distributed_supcon_loss, supcon_loss

WORLD, LOCAL_BATCH, IN_DIM, OUT_DIM = 2, 4, 6, 5
# (name, views, labels of the full batch (rank 0 holds the first half) or None, loss kwargs).
# Labels 0-2 have their only positive on the other rank when views == 1; 3 and 4 have none.
CASES = [
    ("cross_rank", 1, [0, 1, 2, 3, 0, 1, 2, 4], {}),
    ("cross_rank_in", 1, [0, 1, 2, 3, 0, 1, 2, 4], {"variant": "in"}),
    ("cross_rank_blockwise", 1, [0, 1, 2, 3, 0, 1, 2, 4], {"block_size": 3}),
    ("two_views", 2, [0, 0, 1, 2, 1, 3, 3, 2], {"temperature": 0.2, "base_temperature": 0.07}),
    ("simclr", 2, None, {}),
]


def _model_and_batch(views: int):
    """The same nn.Linear and inputs [2 * LOCAL_BATCH, views, IN_DIM] in every process."""
    torch.manual_seed(0)
    model = torch.nn.Linear(IN_DIM, OUT_DIM)
    return model, torch.randn(WORLD * LOCAL_BATCH, views, IN_DIM)


def _single_process(views, labels, kwargs):
    """Loss and parameter gradients on the whole batch in one process."""
    model, x = _model_and_batch(views)
    labels = None if labels is None else torch.tensor(labels)
    loss = supcon_loss(F.normalize(model(x), dim=-1), labels, **kwargs)
    loss.backward()
    return loss.detach(), model.weight.grad, model.bias.grad


def _worker(rank: int, port: int, out_path: str) -> None:
    """One DDP rank: every case on its half of the batch; rank 0 saves the results."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch_dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    results = {}
    for name, views, labels, kwargs in CASES:
        model, x = _model_and_batch(views)
        ddp = DistributedDataParallel(model)
        mine = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        local_labels = None if labels is None else torch.tensor(labels)[mine]
        loss = distributed_supcon_loss(F.normalize(ddp(x[mine]), dim=-1), local_labels, **kwargs)
        loss.backward()  # DDP averages the parameter gradients over ranks
        mean_loss = loss.detach().clone()
        torch_dist.all_reduce(mean_loss)
        results[name] = (mean_loss / WORLD, model.weight.grad, model.bias.grad)
    if rank == 0:
        torch.save(results, out_path)
    torch_dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    out_path = str(tmp_path_factory.mktemp("ddp") / "results.pt")
    mp.start_processes(_worker, args=(_free_port(), out_path), nprocs=WORLD, join=True,
                       start_method="spawn")
    return torch.load(out_path)


@pytest.mark.parametrize("name,views,labels,kwargs", CASES, ids=[c[0] for c in CASES])
def test_two_ranks_reproduce_one_process(two_process_results, name, views, labels, kwargs):
    loss, weight_grad, bias_grad = two_process_results[name]
    expected_loss, expected_weight_grad, expected_bias_grad = _single_process(views, labels, kwargs)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weight_grad, expected_weight_grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(bias_grad, expected_bias_grad, rtol=1e-4, atol=1e-6)


def test_single_process_fallbacks():
    assert not dist.is_distributed()
    assert (dist.rank(), dist.world_size(), dist.is_main_process()) == (0, 1, True)
    x = torch.randn(3, 2, requires_grad=True)
    assert dist.gather_with_grad(x) is x and dist.gather_no_grad(x) is x


def test_rank_zero_only_runs_on_rank_zero(monkeypatch):
    calls = []
    logged = dist.rank_zero_only(lambda value: calls.append(value) or value)
    assert logged(3) == 3 and calls == [3]
    monkeypatch.setattr(dist, "rank", lambda: 1)
    assert logged(4) is None and calls == [3]


def test_distributed_loss_without_process_group_is_supcon_loss():
    torch.manual_seed(0)
    features = F.normalize(torch.randn(10, 2, 8), dim=-1)
    labels = torch.randint(0, 3, (10,))
    torch.testing.assert_close(distributed_supcon_loss(features, labels, variant="in"),
                               supcon_loss(features, labels, variant="in"))
