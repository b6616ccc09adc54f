"""Ray Tune: Optuna's TPE proposes (OptunaSearch, sampling the same sqlite study as the plain
Optuna backend), ASHA stops poor trials early, trials run as Ray tasks on this machine or a
cluster. Trials only report to Tune; a callback on the driver records them (recorder.py).

Local by default: `ray.init` with this machine's CPUs (and GPUs), nothing served beyond
127.0.0.1 (no dashboard; every Ray process listens on the loopback address only, see connect). `address` (or RAY_ADDRESS) joins a running cluster instead.
"""

import functools
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.sweep.ledger import FAILED
from pipeline.sweep.ray_output import RAY_LOG, echo_on, ray_output_to
from pipeline.sweep.recorder import Recorder
from pipeline.sweep.study import close_stale_trials, open_study, queue_trials
from pipeline.sweep.study import storage as study_storage
from pipeline.sweep.trial import TrialSetup, run_trial

TUNE_METRIC = "objective"
"""The name trials report the objective under (Tune flattens keys on '/': val/knn_top1 would nest)."""


LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for a machine that is not part of a cluster: off, Ray keeps 127.0.0.1 as the
node's address. On (Linux's default in Ray 2.60) it replaces 127.0.0.1 with the machine's
routable address, and its GCS, raylet and workers listen on every interface."""


def connect(address: str | None) -> bool:
    """Start a local Ray, or join `address` / RAY_ADDRESS; False when Ray was already running here."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = {"logging_level": "WARNING", "log_to_driver": True}
    if address:
        ray.init(address=address, **quiet)
    else:
        with _loopback_only():
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1", **quiet)
    return True


@contextmanager
def _loopback_only() -> Iterator[None]:
    """Within the block, Ray treats this machine as no cluster's member: the processes it starts
    get 127.0.0.1 (the variable is inherited), and so does the address the driver hands them, which
    Ray read from the variable when it was imported (a notebook or test may have imported it
    before): so the module's flag is set as well. Both are put back afterwards, so a later
    ray.init in this process can join a cluster."""
    from ray._private import ray_constants

    before_env, before_flag = os.environ.get(LOOPBACK_ONLY), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ONLY], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_flag
        if before_env is None:
            os.environ.pop(LOOPBACK_ONLY, None)
        else:
            os.environ[LOOPBACK_ONLY] = before_env


def trial_resources(max_concurrent: int) -> tuple[int, int]:
    """(CPUs = torch threads, GPUs) per trial: the largest node's CPUs split between the concurrent
    trials, so they do not oversubscribe it; one GPU per trial where the cluster has any."""
    import ray

    node_cpus = [int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")]
    cpus = max(node_cpus, default=os.cpu_count() or 1)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    return max(1, cpus // max_concurrent), gpus


@functools.cache
def node_name() -> str:
    """This Ray node as <ip>/<first 8 hex of its node id>: the address names the machine, the id
    tells apart two nodes started on one machine (a test's cluster). Cached: a worker process
    never moves to another node, so a reused worker asks the cluster's node table once."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    # the address the node joined with (ray start --node-ip-address), not a probe of this host's
    # interfaces, which names the same machine whatever address the cluster uses
    address = next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id), ray.util.get_node_ip_address())
    return f"{address}/{node_id[:8]}"


def _trainable(config: dict, setup: TrialSetup) -> None:
    """A Ray trial: the shared trial code, reporting each epoch to Tune."""
    from ray import tune

    node = node_name()

    def report(epoch: int, metrics: dict[str, float]) -> None:
        tune.report({TUNE_METRIC: float(metrics.get(setup.objective, float("nan"))), "epoch": epoch, "metrics": dict(metrics), "node": node})

    run_trial(setup, config, report)


def _recorder_callback(recorder: Recorder) -> Any:
    from ray.tune import Callback

    class RecordTrials(Callback):
        """Driver-side: every trial's start, epochs and end go to MLflow and the ledger."""

        def __init__(self, recorder: Recorder) -> None:
            self.recorder, self.numbers = recorder, {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.numbers[trial.trial_id] = self.recorder.start(dict(trial.config))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            number = self.numbers[trial.trial_id]
            self.recorder.place(number, str(result.get("node", "")))
            self.recorder.epoch(number, int(result["epoch"]), result["metrics"])

        def on_trial_complete(self, iteration, trials, trial, **info):
            if trial.trial_id in self.numbers:
                self.recorder.end(self.numbers.pop(trial.trial_id))

        def on_trial_error(self, iteration, trials, trial, **info):
            if trial.trial_id in self.numbers:
                self.recorder.end(self.numbers.pop(trial.trial_id), FAILED, error=_error_text(trial))

        # Tune pickles its run config (tuner.pkl, for Tuner.restore, which this sweep does not
        # use: it resumes from its own study and ledger); the MLflow client stays on the driver.
        def __getstate__(self) -> dict:
            return {"recorder": None, "numbers": {}}

    return RecordTrials(recorder)


class _NoTunerRestoreHint(logging.Filter):
    """Tune's hint after Ctrl-C (resume with Tuner.restore) does not apply: the sweep prints its own
    `--resume` command."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore" not in record.getMessage()


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    try:
        return Path(path).read_text() if path else "trial failed"
    except OSError:
        return "trial failed"


def run(
    setup: TrialSetup, *, space: str, study_folder: Path, study_name: str, seed: int, samples: int, todo: int, recorder: Recorder, fresh: bool,
    max_concurrent: int, address: str | None, storage_path: str | None,
) -> None:
    """Run `todo` more trials, at most `max_concurrent` at once. Ctrl-C (Tune stops the run and
    returns) is raised here as KeyboardInterrupt when trials were left unfinished."""
    log_path = study_folder / RAY_LOG
    with ray_output_to(log_path) as terminal:
        echo, recorder.echo = recorder.echo, echo_on(terminal, recorder.echo)
        recorder.echo(f"Ray's own output (cluster, Tune, workers): {log_path}")
        try:
            started = connect(address)
            try:
                _tune(setup, space, study_folder, study_name, seed, samples, todo, recorder, fresh, max_concurrent, storage_path)
            finally:
                if started:
                    import ray

                    ray.shutdown()
        finally:
            recorder.echo = echo


def _tune(setup, space, study_folder, study_name, seed, samples, todo, recorder, fresh, max_concurrent, storage_path) -> None:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    threads, gpus = trial_resources(max_concurrent)
    logging.getLogger("ray.tune.tune").addFilter(_NoTunerRestoreHint())
    setup = replace(setup, threads=threads)
    study = open_study(study_folder, study_name, seed=seed, samples=samples)
    close_stale_trials(study)
    sample = queue_trials(study, space, setup.section, setup.params, samples=samples, fresh=fresh)
    searcher = OptunaSearch(
        space=sample, metric=TUNE_METRIC, mode="max",
        sampler=study.sampler, study_name=study_name, storage=study_storage(study_folder),
    )  # fmt: skip
    scheduler = ASHAScheduler(time_attr="training_iteration", metric=TUNE_METRIC, mode="max", max_t=setup.epochs, grace_period=1, reduction_factor=2)
    trainable = tune.with_resources(tune.with_parameters(_trainable, setup=setup), {"cpu": threads, "gpu": gpus})
    storage = str(Path(storage_path).resolve()) if storage_path and "://" not in storage_path else storage_path or str(study_folder / "ray")
    ended_before = recorder.ended
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent), scheduler=scheduler, num_samples=todo),
        run_config=tune.RunConfig(
            name=f"{study_name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=storage, callbacks=[_recorder_callback(recorder)],
            verbose=0, failure_config=tune.FailureConfig(max_failures=0),
        ),
    )  # fmt: skip
    tuner.fit()
    if recorder.ended - ended_before < todo:
        raise KeyboardInterrupt  # Tune caught Ctrl-C and stopped early; the driver keeps what ended
