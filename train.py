"""Train an AutoGluon tabular model, gate it, shrink it and store it for BentoML.

    python train.py --demo
    python train.py --dataset birdstrikes       # datetime and free-text features, ~1 minute
    python train.py --data churn.csv --label churned --min-score roc_auc=0.8
    python train.py --data churn.csv --label churned \\
        --challenge churn@production --min-gain 0.005 --promote

The same command as `agbento train` (agbento/cli/train.py, which lists every option and
exit code under --help); the steps are agbento/training/pipeline.py.
"""

import sys

from agbento.cli import run

if __name__ == "__main__":
    run(["train", *sys.argv[1:]])
