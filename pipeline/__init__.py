"""supcon-pipeline: a reproducible experiment pipeline for Supervised Contrastive Learning.

The library never reads params.yaml or argv; stages/ parse configuration and call in here.
Heavy optional dependencies (Ray, MLflow, Optuna) are imported lazily where they are used.
"""

__version__ = "0.1.0"
