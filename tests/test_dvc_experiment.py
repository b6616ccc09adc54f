"""The MLflow tags of a stage run by `dvc exp run` (pipeline/dvc_experiment.py): DVC's experiment
name and baseline commit from the environment DVC gives every stage of an experiment; none for a
plain `dvc repro`. The served project runs a real `dvc exp run` (tests/test_mlflow_server.py)."""

from pipeline.dvc_experiment import experiment_tags


def test_an_experiments_name_and_baseline_become_tags():
    environ = {"DVC_EXP_NAME": "lucid-bass", "DVC_EXP_BASELINE_REV": "0" * 40, "PATH": "/usr/bin"}
    assert experiment_tags(environ) == {"dvc_exp_name": "lucid-bass", "dvc_exp_baseline_rev": "0" * 40}


def test_a_plain_repro_gets_no_experiment_tags():
    assert experiment_tags({"PATH": "/usr/bin"}) == {}
    assert experiment_tags({"DVC_EXP_NAME": "", "DVC_EXP_BASELINE_REV": ""}) == {}
