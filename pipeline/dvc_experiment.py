"""A stage run by `dvc exp run` is tagged with the experiment's name and baseline commit, so the
MLflow UI can be filtered by experiment (``tags.dvc_exp_name = 'lucid-bass'``) and a row of
`dvc exp show` found among the runs. DVC hands both to every stage command of an experiment in
its environment (DVC_EXP_NAME, DVC_EXP_BASELINE_REV); a plain `dvc repro` sets neither, and the
run gets no such tags."""

import os
from collections.abc import Mapping

EXPERIMENT_TAGS = {"DVC_EXP_NAME": "dvc_exp_name", "DVC_EXP_BASELINE_REV": "dvc_exp_baseline_rev"}
"""DVC's environment variable -> the MLflow tag it becomes."""


def experiment_tags(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    return {tag: environ[variable] for variable, tag in EXPERIMENT_TAGS.items() if environ.get(variable)}
