"""Model selection on val, the same rule for every method: keep the weights of the best val epoch.

The CE baseline and the linear probe both report the test score of the epoch with the highest
val top-1 (ties: the earlier epoch), so neither method is favoured by when it is stopped. The
best weights are kept in memory; with a checkpoint path they are also written to checkpoint.BEST
next to it at each checkpoint (`save`, called by `fit` just before last.pt), so the pair on disk
always belongs together and a resumed run continues the same selection from BEST. Without a val
split (data.val_fraction 0) nothing is selected: the last epoch is the model, and BEST says so
with val_top1 None.

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
    (the last epoch is the model: nothing is copied, BEST gets the weights at each checkpoint).
    fresh: a new run (a stale BEST is deleted); otherwise a resumed one (BEST is read back).
    """

    def __init__(self, model: nn.Module, val_top1: Callable[[], float] | None, checkpoint_path: Path | None, *, fresh: bool) -> None:
        self.model, self.val_top1 = model, val_top1
        self.path = checkpoint_path.with_name(checkpoint.BEST) if checkpoint_path is not None else None
        self.kept: dict | None = None
        """{"epoch", "val_top1", "model"} of the best epoch so far (rank zero, with val)."""
        self.unsaved = False
        """Whether `kept` is newer than BEST on disk."""
        if self.path is not None and dist.is_main_process():
            if fresh:
                self.path.unlink(missing_ok=True)  # a stale best from another run must not win
            elif val_top1 is not None:
                self.kept = checkpoint.best_so_far(self.path)

    def __call__(self, epoch: int) -> dict[str, float]:
        if self.val_top1 is None:
            return {}
        accuracy = self.val_top1()  # on every rank: under torchrun each scores its share of val
        if dist.is_main_process() and (self.kept is None or accuracy > self.kept["val_top1"]):
            weights = copy.deepcopy(checkpoint.unwrap(self.model).state_dict())
            self.kept, self.unsaved = {"epoch": epoch, "val_top1": accuracy, "model": weights}, True
        return {"val/top1": accuracy}

    def save(self, epoch: int) -> None:
        """At fit's checkpoint after `epoch`: write BEST if it changed (without val: this epoch's weights)."""
        if self.path is None or not dist.is_main_process():
            return
        if self.val_top1 is None:
            checkpoint.save_best(self.path, model=self.model, epoch=epoch, val_top1=None)
        elif self.unsaved:
            checkpoint.save_best(self.path, model=self.kept["model"], epoch=self.kept["epoch"], val_top1=self.kept["val_top1"])
            self.unsaved = False

    def best(self) -> dict | None:
        """{"epoch", "val_top1", "model"} of the best epoch so far (rank zero), or None before the
        first; without val, None: the model as it is (the last epoch) is the best."""
        return self.kept

    def load_best(self) -> nn.Module:
        """The model with the best val epoch's weights (in place, on every rank), in eval mode."""
        if dist.is_main_process() and self.kept is not None:
            checkpoint.unwrap(self.model).load_state_dict(self.kept["model"])
        return dist.broadcast_module(self.model).eval()
