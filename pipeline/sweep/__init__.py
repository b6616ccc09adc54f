"""Hyperparameter sweeps: `python -m pipeline.sweep --space temperature`.

A trial is a short training through `pipeline.training.train` (no second loop), selected on val;
the search is Optuna's TPE, run by Ray Tune with ASHA (`tune_backend.py`) or by plain Optuna with
a pruner (`optuna_backend.py`). One concept per file:

    spaces.py          the search spaces (names, keys, ranges), defined once for both backends
    trial.py           one trial: params with the trial's values, training, per-epoch reports
    study.py           the Optuna study in sqlite that both backends sample from (resumable)
    ledger.py          the sweep's state on disk: settings, parent run, every ended trial
    mlflow_runs.py     driver-side MLflow logging: one parent run, one child run per trial
    recorder.py        a trial's start, epochs and end on the driver: MLflow child run and ledger
    results.py         results.csv, summary.json (read by the report), the best config
    plot.py            the objective against the swept parameter(s)
    driver.py          `run_sweep`: ties the above together for either backend
    confirm.py         `--confirm K`: the top K finished temperatures besides 0.1, and 0.1, at full length, every seed
    confirm_train.py   one confirmation run: the stages' SupCon, then their linear probe, val top-1
    confirm_ledger.py  the confirmation's ended runs on disk (confirm.json), so a rerun continues

Ray and Optuna are imported inside the backends only, so `import pipeline` stays light.
"""
