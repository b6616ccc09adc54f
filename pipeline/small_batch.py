"""SupCon at a small batch, matched to the main run by steps or by epochs (the small_batch matrix).

A small-batch cell trains the main stages' SupCon config at another batch size, with or without
the momentum-key queue (`supcon.memory.size`). It is compared with the main run at one of two
equal budgets:

- `steps`: the same optimizer steps and warm-up steps. At batch b against the main batch B the
  cell trains epochs x b / B epochs (rounded to whole epochs, at least one: the engine trains whole
  epochs, so the cell's recorded steps say how close it came) with warm-up epochs x b / B, so the
  warm-up covers as many steps as the main run's. It sees b / B of the main run's images.
- `epochs`: the same epochs and warm-up epochs: as many images seen, B / b times the steps.

The learning rate follows the config's own rule at the new batch (`optimizer.scale_lr`: lr x b / 256,
the linear scaling rule the main run uses at its batch).
"""

from dataclasses import replace

from pipeline.config import SupConConfig


def small_batch_config(config: SupConConfig, *, batch_size: int, queue: int, equal: str) -> SupConConfig:
    """`config` at `batch_size` with a queue of `queue` keys (0: none), trained for as many steps
    (`equal` "steps") or epochs ("epochs") as `config` itself."""
    memory = replace(config.memory, size=queue)
    if equal == "epochs":
        return replace(config, batch_size=batch_size, memory=memory)
    if equal != "steps":
        raise ValueError(f"equal must be 'steps' or 'epochs', got {equal!r}")
    ratio = batch_size / config.batch_size
    epochs = max(1, round(config.epochs * ratio))
    optimizer = replace(config.optimizer, warmup_epochs=config.optimizer.warmup_epochs * ratio)
    return replace(config, batch_size=batch_size, memory=memory, epochs=epochs, optimizer=optimizer)
