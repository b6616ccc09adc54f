"""Training under torchrun (2 gloo processes on the CPU) reproduces one process where that is defined.

One spawn runs every case in both ranks (`_worker`); the tests compare what each rank saved with
the same computation in this process. Cases: BatchNorm over the global batch (model.sync_batchnorm),
the gather of uneven shares, the kNN monitor computed in shares, the linear probe trained under
DDP, and a NaN on one rank stopping both at the same step with one line. Single-process tests of
the no-val-split rules (data.val_fraction 0) follow at the end.
"""

import contextlib
import dataclasses
import io
import json
import os
import socket
from datetime import timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from pipeline import checkpoint, dist
from pipeline.batches import TensorBatches
from pipeline.config import CrossEntropyConfig, LinearConfig, ModelConfig, OptimizerConfig
from pipeline.data.prepared import PreparedDataset, Split
from pipeline.engine import Loop, TrainingDiverged, fit
from pipeline.evaluate import knn_predict
from pipeline.methods.contrastive import LOO_SAMPLE, knn_monitor, loo_sample, sharded_knn
from pipeline.methods.selection import BestOnVal
from pipeline.preprocess import eval_preprocess
from pipeline.run_context import RunContext
from pipeline.sync_batchnorm import CpuSyncBatchNorm, sync_batchnorm
from pipeline.training import train

WORLD = 2
CPU = torch.device("cpu")
SIZE, CLASSES = 8, 4
PROBE_BATCH = 8  # per rank; one process takes WORLD * PROBE_BATCH, so both see the same samples per step
NAN_CALL = 5  # rank 1's 5th step: epoch 2, step 2 (3 steps per epoch)


# ---- inputs every process builds the same way ----


def _bn_model() -> nn.Module:
    """Conv + BatchNorm2d layers and a BatchNorm1d head: [B, 3, 6, 6] -> [B, 5]."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(48, 5), nn.BatchNorm1d(5, momentum=None),
    )  # fmt: skip


def _bn_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs [8, 3, 6, 6] (rank r holds rows 4r..4r+3) and loss weights [8, 5]."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 6, 6, generator=generator) * 2 + 0.5
    return x, torch.randn(8, 5, generator=generator)


def _bn_step(model: nn.Module, x: torch.Tensor, weights: torch.Tensor, total: int) -> torch.Tensor:
    """Forward and backward of sum(out * weights) / total, scaled by the world size: DDP averages
    the ranks' gradients, and the ranks' losses together are the whole batch's."""
    out = model(x)
    ((out * weights).sum() * dist.world_size() / total).backward()
    return out.detach()


def _split(n: int, seed: int) -> Split:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, SIZE, SIZE), dtype=torch.uint8, generator=generator)
    return Split(images, torch.arange(n) % CLASSES)


def _dataset(train_n: int, val_n: int) -> PreparedDataset:
    manifest = {"class_names": ["a", "b", "c", "d"], "image_shape": [1, SIZE, SIZE], "mean": [0.5], "std": [0.25]}
    return PreparedDataset(Path("synthetic"), _split(train_n, 0), _split(val_n, 1), _split(4, 2), manifest, {})


def _encoder() -> nn.Module:
    """A random conv encoder: uint8-derived [B, 1, 8, 8] -> [B, 72]."""
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten())


def _knn(train_n: int, val_n: int) -> dict[str, float]:
    data = _dataset(train_n, val_n)
    monitor = knn_monitor(
        _encoder(), data.train, data.val, preprocess=eval_preprocess(SIZE, 1, [0.5], [0.25]), device=CPU,
        num_classes=CLASSES, k=5, every=1, epochs=1,
    )  # fmt: skip
    return monitor(1)


def _probe_config(batch_size: int) -> LinearConfig:
    return LinearConfig(
        epochs=3, batch_size=batch_size, augmentation=dataclasses.replace(LinearConfig().augmentation, policy="none"),
        optimizer=OptimizerConfig(name="sgd", lr=2.0, scale_lr=False, momentum=0.9, warmup_epochs=0),  # val top-1 peaks at epoch 1
    )  # fmt: skip


def _probe(batch_size: int, checkpoint_path: Path | None, wrap=None) -> dict:
    """The linear probe on 2 * PROBE_BATCH train images: weights, history, predictions, best epoch."""
    data = _dataset(WORLD * PROBE_BATCH, 24)
    run = RunContext(seed=0, device=CPU, checkpoint_path=checkpoint_path, wrap=wrap)
    trained = train("linear", data, data.train, config=_probe_config(batch_size), run=run, encoder=_encoder())
    best = checkpoint.best_so_far(checkpoint_path.with_name(checkpoint.BEST)) if checkpoint_path else None
    return {
        "weights": {k: v.clone() for k, v in trained.model.state_dict().items()},
        "history": [{k: v for k, v in row.items() if k.startswith("val/") or k in ("train/loss", "train/steps")} for row in trained.history],
        "predicted": trained.predictor(data.val.images),
        "best_epoch": best["epoch"] if best else None,
    }


# ---- the cases each rank runs ----


def _sync_batchnorm_case(rank: int) -> dict:
    from stages.common import placer  # the stages' placement, as torchrun runs it

    x, weights = _bn_batch()
    mine = slice(4 * rank, 4 * rank + 4)
    try:  # why dist has its own layer for the CPU
        nn.SyncBatchNorm(3).train()(torch.randn(4, 3))
        results = {"torch_refuses_cpu": ""}
    except ValueError as err:
        results = {"torch_refuses_cpu": str(err)}
    for sync in (True, False):
        model = _bn_model()
        placed = placer(SimpleNamespace(model=SimpleNamespace(sync_batchnorm=sync), run=SimpleNamespace(compile=False)), CPU)(model)
        out = _bn_step(placed, x[mine], weights[mine], total=x.shape[0])
        results[sync] = {
            "out": out,
            "grads": {name: p.grad.clone() for name, p in model.named_parameters()},
            "buffers": {name: b.clone() for name, b in model.named_buffers()},
            "synced_layers": sum(isinstance(m, CpuSyncBatchNorm) for m in model.modules()),
        }
    return results


def _gather_case(rank: int) -> dict:
    rows = torch.arange(rank + 1, dtype=torch.float32).view(-1, 1) + 10 * rank  # rank 0: [[0]], rank 1: [[10], [11]]
    shares = dist.map_shares(lambda t: t * 2, torch.arange(7), lambda t, index: t[index])
    return {"uneven": dist.gather_uneven(rows), "shares": shares, "share": dist.share(7)}


def _diverge_case(rank: int, out_dir: Path) -> dict:
    from stages import cli

    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    placed = dist.wrap_ddp(model, CPU)
    calls = {"n": 0}

    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = F.cross_entropy(placed(x), y)
        return loss * float("nan") if rank == 1 and calls["n"] == NAN_CALL else loss  # NaN on rank 1 only

    generator = torch.Generator().manual_seed(3)
    batches = TensorBatches(torch.randn(24, 3, generator=generator), torch.arange(24) % 2, batch_size=4, seed=0)
    loop = Loop("tiny", placed, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0), loss_fn, batches, epochs=3)
    try:
        fit(loop, RunContext(seed=0, device=CPU, checkpoint_path=out_dir / "diverge" / "last.pt", checkpoint_every_steps=1))
    except TrainingDiverged as err:
        diverged = err
    # What the stage's CLI makes of it under torchrun: rank zero prints, every rank writes its error file.
    error_file = out_dir / f"error{rank}.json"
    stderr = io.StringIO()
    os.environ.update(RANK=str(rank), TORCHELASTIC_ERROR_FILE=str(error_file))
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exited:
        with cli.one_line_errors():
            raise diverged
    return {
        "at": (diverged.epoch, diverged.step), "message": str(diverged), "stderr": stderr.getvalue(),
        "code": exited.value.code, "error_file": json.loads(error_file.read_text()),
    }  # fmt: skip


def _knn_inputs() -> tuple:
    """A 7-row bank (shares of 3 and 4 rows, fewer than k = 5), 6 queries, 3 excluded rows."""
    generator = torch.Generator().manual_seed(3)
    bank, queries = torch.randn(7, 4, generator=generator), torch.randn(6, 4, generator=generator)
    labels, exclude = torch.tensor([0, 1, 2, 0, 1, 2, 0]), torch.tensor([0, 4, 6, 1, 2, 5])
    return bank, queries, labels, exclude


def _sharded_knn_case() -> dict:
    """Each rank holds its share of the bank only; scores of every query against the whole bank."""
    bank, queries, labels, exclude = _knn_inputs()
    rows = dist.share(len(bank))
    knn = partial(sharded_knn, bank[rows], queries, offset=int(rows[0]), labels=labels, num_classes=3, k=5)
    return {"scores": knn(), "scores_loo": knn(exclude=exclude)}


MEMORY_STEPS, MEMORY_BATCH, MEMORY_VIEWS = 4, 8, 2  # global batch of 8 images; each rank takes 4


class _Embed(nn.Module):
    """A BatchNorm-free embedding, so a rank's keys do not depend on which rows share its batch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x), dim=1)


def _memory_run(rows: slice, world: int) -> dict:
    """MEMORY_STEPS steps of SupCon with a key queue on `rows` of each global batch."""
    from pipeline.methods.key_memory import KeyMemory

    torch.manual_seed(0)
    model = _Embed()
    memory = KeyMemory(model, size=20, momentum=0.5, dim=4)  # 16 keys a step: the FIFO wraps at step 2
    placed = dist.wrap_ddp(model, CPU) if world > 1 else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    data = torch.Generator().manual_seed(1)
    losses, weights, queues = [], [], []
    for _ in range(MEMORY_STEPS):
        x = torch.randn(MEMORY_BATCH * MEMORY_VIEWS, 6, generator=data).view(MEMORY_BATCH, MEMORY_VIEWS, 6)
        labels = torch.randint(0, 3, (MEMORY_BATCH,), generator=data)
        inputs, own = x[rows].flatten(0, 1), labels[rows]
        features = placed(inputs).view(len(own), MEMORY_VIEWS, -1)
        loss = memory.loss(features, own, inputs, temperature=0.5, across_ranks=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        memory.after_step(model)
        losses.append(loss.detach())
        weights.append({name: p.detach().clone() for name, p in model.named_parameters()})
        queues.append(memory.queue.contents())
    return {"losses": torch.stack(losses), "weights": weights, "queues": queues, "state": memory.state_dict()}


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch_dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    torch.set_num_threads(1)
    out = Path(out_dir)
    wrap = lambda model: dist.wrap_ddp(model, CPU)  # noqa: E731
    results = {
        "sync_batchnorm": _sync_batchnorm_case(rank),
        "gather": _gather_case(rank),
        "knn": _knn(51, 17),  # shares of 25/26 train and 8/9 val images
        "knn_loo": _knn(51, 0),
        "sharded_knn": _sharded_knn_case(),
        "probe": _probe(PROBE_BATCH, out / "probe" / "last.pt", wrap),
        "probe_in_memory": _probe(PROBE_BATCH, None, wrap),
        "diverge": _diverge_case(rank, out),
        "key_memory": _memory_run(slice(rank * MEMORY_BATCH // WORLD, (rank + 1) * MEMORY_BATCH // WORLD), WORLD),
    }
    torch.save(results, out / f"rank{rank}.pt")
    torch_dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Every case's results, [rank 0's, rank 1's], from one spawn of two gloo processes."""
    out_dir = tmp_path_factory.mktemp("multiprocess")
    mp.start_processes(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True, start_method="spawn")
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]


# ---- 0. The momentum-key queue: 2 processes equal 1 on the same samples ----


def test_key_queue_under_two_processes_equals_one_process_on_the_whole_batch(ranks):
    alone = _memory_run(slice(None), 1)
    shared = [r["key_memory"] for r in ranks]

    # Each rank's loss is world x its anchors' sum / all anchors: their mean is the one-process loss.
    torch.testing.assert_close((shared[0]["losses"] + shared[1]["losses"]) / WORLD, alone["losses"], rtol=0, atol=1e-6)
    for step in range(MEMORY_STEPS):
        for run in shared:
            for name, weight in alone["weights"][step].items():  # DDP averaged the ranks' gradients
                torch.testing.assert_close(run["weights"][step][name], weight, rtol=0, atol=1e-6, msg=f"step {step} {name}")
            keys, labels = run["queues"][step]  # the gathered keys: every rank holds the one queue
            torch.testing.assert_close(keys, alone["queues"][step][0], rtol=0, atol=1e-6)
            assert torch.equal(labels, alone["queues"][step][1])
    assert len(alone["queues"][-1][0]) == 20 and shared[0]["state"]["queue.filled"] == 20


# ---- 1. BatchNorm over the global batch ----


def test_sync_batchnorm_matches_one_process_on_the_whole_batch(ranks):
    model, (x, weights) = _bn_model(), _bn_batch()
    out = _bn_step(model, x, weights, total=x.shape[0])
    synced = [r["sync_batchnorm"][True] for r in ranks]

    assert synced[0]["synced_layers"] == 3
    torch.testing.assert_close(torch.cat([s["out"] for s in synced]), out, rtol=0, atol=1e-5)
    for name, param in model.named_parameters():
        for s in synced:  # DDP averaged the ranks' gradients
            torch.testing.assert_close(s["grads"][name], param.grad, rtol=0, atol=1e-5, msg=name)
    for name, buffer in model.named_buffers():
        for s in synced:
            torch.testing.assert_close(s["buffers"][name], buffer, rtol=0, atol=1e-5, msg=name)


def test_without_sync_batchnorm_each_rank_normalises_its_share_alone(ranks):
    model, (x, weights) = _bn_model(), _bn_batch()
    out = _bn_step(model, x, weights, total=x.shape[0])
    alone = [r["sync_batchnorm"][False] for r in ranks]

    assert alone[0]["synced_layers"] == 0
    assert (torch.cat([a["out"] for a in alone]) - out).abs().max() > 1e-2  # the test above can fail
    assert (alone[0]["grads"]["0.weight"] - model[0].weight.grad).abs().max() > 1e-4


def test_torch_sync_batchnorm_refuses_cpu_tensors_which_is_why_dist_has_its_own(ranks):
    assert "expected input tensor to be on GPU" in ranks[0]["sync_batchnorm"]["torch_refuses_cpu"]


def test_sync_batchnorm_in_one_process_leaves_the_model_as_it_is():
    model = _bn_model()
    assert sync_batchnorm(model, CPU) is model and not any(isinstance(m, CpuSyncBatchNorm) for m in model.modules())


# ---- 2. the kNN monitor, computed in shares ----


def test_gather_of_uneven_shares_keeps_rank_order(ranks):
    assert ranks[0]["gather"]["uneven"].flatten().tolist() == [0.0, 10.0, 11.0]
    assert [r["gather"]["share"].tolist() for r in ranks] == [[0, 1, 2], [3, 4, 5, 6]]
    for r in ranks:
        assert r["gather"]["shares"].tolist() == [0, 2, 4, 6, 8, 10, 12]


@pytest.mark.parametrize("case,val_n", [("knn", 17), ("knn_loo", 0)])
def test_knn_monitor_in_shares_equals_one_process(ranks, case, val_n):
    expected = _knn(51, val_n)
    assert list(expected) == (["val/knn_top1"] if val_n else ["train/knn_top1_loo"])
    assert ranks[0][case] == ranks[1][case] == expected


def test_sharded_knn_scores_equal_those_of_one_bank(ranks):
    bank, queries, labels, exclude = _knn_inputs()
    whole = knn_predict(bank, labels, queries, num_classes=3, k=5)
    left_out = knn_predict(bank, labels, queries, num_classes=3, k=5, exclude=exclude)
    for r in ranks:
        torch.testing.assert_close(r["sharded_knn"]["scores"], whole, rtol=1e-5, atol=0)  # float32: the shares' matmuls sum in another order
        torch.testing.assert_close(r["sharded_knn"]["scores_loo"], left_out, rtol=1e-5, atol=0)
    assert not torch.equal(whole, left_out)  # the exclusion mattered


# ---- 3. the linear probe under DDP ----


@pytest.mark.parametrize("case", ["probe", "probe_in_memory"])
def test_linear_probe_under_ddp_is_one_classifier_on_all_the_data(ranks, case, tmp_path):
    one = _probe(WORLD * PROBE_BATCH, tmp_path / "last.pt" if case == "probe" else None)
    first, second = ranks[0][case], ranks[1][case]

    # Every rank ends with the same selected classifier and the same val history.
    for name, tensor in first["weights"].items():
        assert torch.equal(second["weights"][name], tensor), name
    assert torch.equal(first["predicted"], second["predicted"])
    assert [row["val/top1"] for row in first["history"]] == [row["val/top1"] for row in second["history"]]
    assert [row["train/steps"] for row in first["history"]] == [row["train/steps"] for row in second["history"]] == [row["train/steps"] for row in one["history"]]
    # ... and it is the classifier one process trains on the same samples per step.
    assert [row["val/top1"] for row in first["history"]] == [row["val/top1"] for row in one["history"]]
    for name, tensor in one["weights"].items():
        torch.testing.assert_close(first["weights"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(first["predicted"], one["predicted"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        torch.tensor([row["train/loss"] for row in first["history"]]), torch.tensor([row["train/loss"] for row in one["history"]]), rtol=1e-5, atol=1e-6
    )
    if case == "probe":  # the BEST file says which epoch: not the last, so rank 1 holds rank 0's choice
        assert first["best_epoch"] == one["best_epoch"] == 1


# ---- 4. divergence agreed across ranks ----


def test_nan_on_one_rank_stops_every_rank_at_its_step_with_one_line(ranks):
    first, second = ranks[0]["diverge"], ranks[1]["diverge"]

    assert first["at"] == second["at"] == (2, 2)  # rank 1's NaN; rank 0's own loss turns NaN a step later
    assert first["message"] == second["message"] and "epoch 2, step 2 of 3" in first["message"] and "\n" not in first["message"]
    assert "diverge/last.pt" in first["message"]  # epoch 1's checkpoint stays
    assert first["stderr"] == f"error: {first['message']}\n" and second["stderr"] == ""
    assert first["code"] == second["code"] == 2
    for shown in (first["error_file"]["message"], second["error_file"]["message"]):  # torchrun's report shows py_callstack
        assert shown["message"] == shown["extraInfo"]["py_callstack"] == f"error: {first['message']}"


# ---- 5. no val split (data.val_fraction 0), one process ----


def test_without_val_the_last_epoch_is_the_model_and_best_says_so(tmp_path):
    model = nn.Linear(2, 2)
    selection = BestOnVal(model, None, tmp_path / "last.pt", fresh=True)
    for epoch in (1, 2, 3):
        with torch.no_grad():
            model.weight.fill_(epoch)
        assert selection(epoch) == {}
    selection.save(3)  # fit's checkpoint after the last epoch

    assert torch.equal(selection.load_best().weight, torch.full((2, 2), 3.0))
    best = checkpoint.best_so_far(tmp_path / "best.pt")
    assert best["epoch"] == 3 and best["val_top1"] is None
    from stages.common import StageJob

    job = SimpleNamespace(context=SimpleNamespace(checkpoint_path=tmp_path / "last.pt"))
    assert StageJob.selected_epoch(job) == {}  # nothing selected: the report says "final epoch"


def test_probe_and_ce_without_val_train_and_keep_their_last_epoch(tmp_path):
    data = _dataset(32, 0)
    probe = train("linear", data, data.train, config=_probe_config(16), run=RunContext(seed=0, device=CPU, checkpoint_path=tmp_path / "linear" / "last.pt"), encoder=_encoder())
    assert [row["epoch"] for row in probe.history] == [1, 2, 3] and not any("val/top1" in row for row in probe.history)
    last = checkpoint.load(tmp_path / "linear" / "last.pt")["model"]
    assert all(torch.equal(probe.model.state_dict()[k], v) for k, v in last.items())
    assert checkpoint.best_so_far(tmp_path / "linear" / "best.pt")["epoch"] == 3

    config = CrossEntropyConfig(epochs=2, batch_size=16, optimizer=OptimizerConfig(name="sgd", lr=0.05, scale_lr=False))
    model_config = ModelConfig(encoder="small_resnet", width=4, depth=2, blocks=1)
    ce = train("ce", data, data.train, config=config, model_config=model_config, run=RunContext(seed=0, device=CPU))
    assert [row["epoch"] for row in ce.history] == [1, 2] and "val/top1" not in ce.history[-1]
    assert ce.predictor(data.train.images[:3]).shape == (3, CLASSES)


def _loo_reference(bank: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor, k: int) -> float:
    """Hand-written leave-one-out kNN: each row against every other row, weighted vote."""
    bank = F.normalize(bank, dim=1)
    hits = 0
    for i in rows.tolist():
        sims = bank @ bank[i]
        others = [j for j in range(len(bank)) if j != i]
        top = sorted(others, key=lambda j: -sims[j].item())[:k]
        votes = torch.zeros(CLASSES)
        for j in top:
            votes[labels[j]] += (sims[j] / 0.07).exp()
        hits += int(votes.argmax() == labels[i])
    return hits / len(rows)


def test_knn_monitor_without_val_reports_leave_one_out_on_train_and_says_so_once(capsys):
    data = _dataset(40, 0)
    data.train.images[7] = data.train.images[3]  # a duplicate of a query still counts as its neighbour
    preprocess = eval_preprocess(SIZE, 1, [0.5], [0.25])
    monitor = knn_monitor(_encoder(), data.train, data.val, preprocess=preprocess, device=CPU, num_classes=CLASSES, k=5, every=1, epochs=2)

    first, second = monitor(1), monitor(2)

    bank = _encoder().eval()(preprocess(data.train.images)).detach()
    assert first == second and list(first) == ["train/knn_top1_loo"]
    assert first["train/knn_top1_loo"] == pytest.approx(_loo_reference(bank, data.train.labels, loo_sample(40), k=5))
    assert capsys.readouterr().out.count("train/knn_top1_loo") == 1


def test_loo_sample_is_fixed_at_most_the_limit_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    sample = loo_sample(3 * LOO_SAMPLE)
    assert torch.equal(torch.get_rng_state(), state)
    assert len(sample) == LOO_SAMPLE and len(set(sample.tolist())) == LOO_SAMPLE and torch.equal(sample, loo_sample(3 * LOO_SAMPLE))
    assert sorted(loo_sample(50).tolist()) == list(range(50))
