"""scikit-learn estimator contract (R11) for the classifiers of pipeline.models.

Runs every check of ``sklearn.utils.estimator_checks.parametrize_with_checks`` on the
KELM (exact, and Nystroem with logarithmic class weights) and on a small, fast
configuration of the LSTM classifier.
"""

from __future__ import annotations

import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from pipeline.models.kelm import KELMClassifier
from pipeline.models.lstm import LSTMSequenceClassifier

torch.set_num_threads(1)

ESTIMATORS = [
    KELMClassifier(),
    KELMClassifier(approximation="nystroem", n_components=30, class_weight="log", random_state=0),
    # ignore_label=None: the generic checks use -1 as an ordinary class label, which the
    # default ignore_label=-1 (ABAW "no label") would mask out. Small and fast network;
    # it still reaches the accuracy check_classifiers_train asks for.
    LSTMSequenceClassifier(
        hidden=16, layers=1, epochs=20, lr=0.02, batch_size=64, ignore_label=None, random_state=0
    ),
]


# All checks pass, so no ``expected_failed_checks`` are declared: a check that starts
# failing must be fixed or listed there with its reason.
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)
