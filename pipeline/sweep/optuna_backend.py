"""Plain Optuna on this machine, without Ray: TPE proposes, a successive-halving pruner (Optuna's
ASHA) stops poor trials after an epoch's report, trials run one after another in this process.
The study lives in <sweep>/optuna.db, so `--resume` continues it."""

import socket
import traceback
from typing import Any

from pipeline.sweep.ledger import FAILED, STOPPED
from pipeline.sweep.recorder import Recorder
from pipeline.sweep.study import close_stale_trials, open_study, queue_trials
from pipeline.sweep.trial import TrialSetup, run_trial


def default_pruner() -> Any:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)


def run(setup: TrialSetup, *, space: str, study_folder, study_name: str, seed: int, samples: int, todo: int, recorder: Recorder, fresh: bool, pruner: Any = None) -> None:
    """Run `todo` more trials. Ctrl-C propagates (the trial running is left out of the study's results)."""
    import optuna

    study = open_study(study_folder, study_name, seed=seed, samples=samples, pruner=pruner if pruner is not None else default_pruner())
    close_stale_trials(study)
    sample = queue_trials(study, space, setup.section, setup.params, samples=samples, fresh=fresh)
    for _ in range(todo):
        trial = study.ask()
        sample(trial)
        number = recorder.start(trial.params)
        recorder.place(number, socket.gethostname())

        def report(epoch: int, metrics: dict[str, float], trial=trial, number=number) -> None:
            recorder.epoch(number, epoch, metrics)
            if setup.objective in metrics:
                trial.report(float(metrics[setup.objective]), epoch)
                if epoch < setup.epochs and trial.should_prune():
                    raise optuna.TrialPruned()

        try:
            run_trial(setup, trial.params, report)
        except optuna.TrialPruned:
            recorder.end(number, STOPPED)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        except KeyboardInterrupt:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        except Exception:  # a failed trial is a result of the sweep, not the end of it
            recorder.end(number, FAILED, error=traceback.format_exc())
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            objective = recorder.objective(number)
            recorder.end(number)
            study.tell(trial, objective)
