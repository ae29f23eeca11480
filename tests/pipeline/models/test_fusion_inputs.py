"""The packed two-modality layout of the fusion networks round-trips."""

import numpy as np
import pytest
import torch

from pipeline.models.fusion_inputs import pack_inputs, unpack_inputs


def test_pack_unpack_round_trip_zeroes_invalid_bins():
    rng = np.random.default_rng(0)
    v, a = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 2))
    v[0, 1] = np.nan  # invalid bins may hold anything
    vv, av = rng.random((3, 5)) > 0.3, rng.random((3, 5)) > 0.3
    vv[0, 1] = False
    x = pack_inputs(v, vv, a, av)
    assert x.shape == (3, 5, 4 + 1 + 2 + 1) and x.dtype == np.float32
    v2, vm, a2, am = unpack_inputs(torch.from_numpy(x), 4, 2)
    np.testing.assert_array_equal(vm.numpy(), vv)
    np.testing.assert_array_equal(am.numpy(), av)
    np.testing.assert_allclose(v2.numpy(), np.where(vv[..., None], v, 0), rtol=1e-6)
    np.testing.assert_allclose(a2.numpy(), np.where(av[..., None], a, 0), rtol=1e-6)
    assert np.isfinite(x).all()


def test_unpack_refuses_wrong_width():
    with pytest.raises(ValueError, match="expected 4 \\+ 1 \\+ 2 \\+ 1"):
        unpack_inputs(torch.zeros(1, 2, 7), 4, 2)
