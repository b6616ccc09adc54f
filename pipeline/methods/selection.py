"""Model selection on val, the same rule for every method: keep the weights of the best val epoch.

The CE baseline and the linear probe both report the test score of the epoch with the highest
val top-1 (ties: the earlier epoch), so neither method is favoured by when it is stopped. With a
checkpoint path the best weights live in checkpoint.BEST next to it (a resumed run continues the
same selection); without one (tests, sweep trials) they are kept in memory. Without a val split
(data.val_fraction 0) nothing is selected: the last epoch is the model, and BEST says so with
val_top1 None.

Under torchrun every rank computes the val top-1 (each its share of val, the same number on all);
rank zero keeps the best weights, and every rank ends with them (load_best broadcasts).
"""

import copy
from collections.abc import Callable
from pathlib import Path

from torch import nn

from pipeline import checkpoint, dist


class BestOnVal:
    """Evaluate on val after each epoch; keep the best weights; load them back when training ends.

    val_top1: the model's val top-1 now, called on every rank; None when there is no val split
    (every epoch is kept, so the last one is the model).
    """

    def __init__(self, model: nn.Module, val_top1: Callable[[], float] | None, checkpoint_path: Path | None, *, fresh: bool) -> None:
        self.model, self.val_top1 = model, val_top1
        self.path = checkpoint_path.with_name(checkpoint.BEST) if checkpoint_path is not None else None
        self.in_memory: dict | None = None
        if fresh and self.path is not None and dist.is_main_process():
            self.path.unlink(missing_ok=True)  # a stale best from another run must not win

    def __call__(self, epoch: int) -> dict[str, float]:
        if self.val_top1 is None:
            if dist.is_main_process():
                self._keep(epoch, None)
            return {}
        accuracy = self.val_top1()  # on every rank: under torchrun each scores its share of val
        if dist.is_main_process():
            best = self.best()
            if best is None or accuracy > best["val_top1"]:
                self._keep(epoch, accuracy)
        return {"val/top1": accuracy}

    def best(self) -> dict | None:
        """{"epoch", "val_top1", "model"} of the best epoch so far (rank zero), or None before the first."""
        return checkpoint.best_so_far(self.path) if self.path is not None else self.in_memory

    def load_best(self) -> nn.Module:
        """The model with the best val epoch's weights (in place, on every rank), in eval mode."""
        if dist.is_main_process():
            self.model.load_state_dict(self.best()["model"])
        return dist.broadcast_module(self.model).eval()

    def _keep(self, epoch: int, accuracy: float | None) -> None:
        if self.path is not None:
            checkpoint.save_best(self.path, model=self.model, epoch=epoch, val_top1=accuracy)
        else:
            state = copy.deepcopy(checkpoint.unwrap(self.model).state_dict())
            self.in_memory = {"epoch": epoch, "val_top1": accuracy, "model": state}
