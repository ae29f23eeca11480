"""Models holding torch modules serialise to the same bytes for the same weights."""

import pickle

import numpy as np
import torch

from pipeline.models.lstm import LSTMSequenceClassifier
from pipeline.models.persist import save_torch


def _fit():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 3, 4)).astype(np.float32)
    y = (X[:, :, 0].mean(1) > 0).astype(int)
    return LSTMSequenceClassifier(hidden=8, layers=1, epochs=2, random_state=0).fit(X, y), X


def test_identical_fits_pickle_to_identical_bytes():
    # plain tensor pickling keys storages by memory address: two equal models used to differ
    (a, X), (b, _) = _fit(), _fit()
    assert pickle.dumps(a) == pickle.dumps(b)
    back = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(back.predict_proba(X), a.predict_proba(X))


def test_save_torch_bytes_do_not_depend_on_the_file_name(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    save_torch(state, tmp_path / "a.pt")
    save_torch(state, tmp_path / ".b.pt.1234.tmp")  # torch.save to a file would embed this name
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / ".b.pt.1234.tmp").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], state["w"])
