"""RNNPool against a slow, loop-by-loop reference written straight from the equations."""

import math

import numpy as np
import pytest
import torch

from facedet.rnnpool import FastGRNNCell, RNNPool, RNNPoolLayer


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def ref_cell_step(cell, x, h):
    """One FastGRNN step on plain Python lists (float64)."""
    W = cell.W.detach().double().numpy()
    U = cell.U.detach().double().numpy()
    bg = cell.bias_gate.detach().double().numpy()
    bh = cell.bias_update.detach().double().numpy()
    sz = _sigmoid(float(cell.zeta.detach()))
    sn = _sigmoid(float(cell.nu.detach()))
    out = []
    for u in range(cell.hidden_size):
        p = sum(x[i] * W[i, u] for i in range(len(x))) + sum(h[j] * U[j, u] for j in range(len(h)))
        z = _sigmoid(p + bg[u])
        ht = math.tanh(p + bh[u])
        out.append(z * h[u] + (sz * (1 - z) + sn) * ht)
    return out


def ref_run(cell, seq):
    h = [0.0] * cell.hidden_size
    for x in seq:
        h = ref_cell_step(cell, list(x), h)
    return h


def ref_rnnpool_patch(pool, patch):
    """patch: ndarray [k, P, P] -> list of 4*h2 (rows fwd, rows bwd, cols fwd, cols bwd)."""
    k, ph, pw = patch.shape
    row_states = [ref_run(pool.rnn1, [patch[:, i, j] for j in range(pw)]) for i in range(ph)]
    col_states = [ref_run(pool.rnn1, [patch[:, i, j] for i in range(ph)]) for j in range(pw)]
    return (
        ref_run(pool.rnn2, row_states)
        + ref_run(pool.rnn2, row_states[::-1])
        + ref_run(pool.rnn2, col_states)
        + ref_run(pool.rnn2, col_states[::-1])
    )


def _randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.mark.parametrize("grad", [False, True])
def test_cell_matches_reference(grad):
    torch.manual_seed(0)
    cell = FastGRNNCell(3, 5)
    _randomise(cell, 1)  # zeta/nu away from +-100 so both coefficient terms matter
    x = torch.randn(4, 6, 3)
    with torch.set_grad_enabled(grad):
        got = cell(x).detach().double().numpy()
    for n in range(4):
        np.testing.assert_allclose(got[n], ref_run(cell, x[n].double().numpy()), rtol=1e-5, atol=1e-6)


def test_default_init_is_reference_init():
    cell = FastGRNNCell(4, 16)
    assert torch.all(cell.bias_gate == 1) and torch.all(cell.bias_update == 1)
    assert float(cell.zeta.detach()) == 100.0 and float(cell.nu.detach()) == -100.0
    assert 0.07 < float(cell.W.detach().std()) < 0.13


def test_rnnpool_output_order_and_values():
    torch.manual_seed(0)
    pool = RNNPool(2, 4, 3)
    _randomise(pool, 2)
    patches = torch.randn(3, 2, 8, 8)
    with torch.no_grad():
        got = pool(patches).double().numpy()
    assert got.shape == (3, 12)
    for n in range(3):
        np.testing.assert_allclose(got[n], ref_rnnpool_patch(pool, patches[n].double().numpy()), rtol=1e-5, atol=1e-6)


def test_rnnpool_non_square_patch():
    pool = RNNPool(1, 3, 2)
    _randomise(pool, 3)
    patches = torch.randn(2, 1, 4, 6)
    with torch.no_grad():
        got = pool(patches).double().numpy()
    for n in range(2):
        np.testing.assert_allclose(got[n], ref_rnnpool_patch(pool, patches[n].double().numpy()), rtol=1e-5, atol=1e-6)


def test_output_order_is_distinguishable():
    """A patch that differs between rows and columns gives different row/col summaries."""
    pool = RNNPool(1, 4, 4)
    _randomise(pool, 4)
    patch = torch.zeros(1, 1, 8, 8)
    patch[0, 0, 0, :] = torch.arange(8.0) * 0.5  # the top row only, a ramp
    with torch.no_grad():
        out = pool(patch)[0]
    rows_f, rows_b, cols_f, cols_b = out.split(4)
    assert not torch.allclose(rows_f, rows_b) and not torch.allclose(cols_f, cols_b)
    ref = ref_rnnpool_patch(pool, patch[0].double().numpy())
    np.testing.assert_allclose(out.double().numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("h,w", [(16, 20), (19, 23), (8, 8)])
def test_layer_matches_patch_loop(h, w):
    """The shared-work map pooling equals cutting every patch out and pooling it."""
    torch.manual_seed(0)
    layer = RNNPoolLayer(3, 4, 5, patch_size=8, stride=4)
    _randomise(layer, 5)
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        y = layer(x)
    oh, ow = (h - 8) // 4 + 1, (w - 8) // 4 + 1
    assert y.shape == (2, 20, oh + 1, ow + 1)
    for b in range(2):
        for i in range(oh):
            for j in range(ow):
                patch = x[b, :, 4 * i : 4 * i + 8, 4 * j : 4 * j + 8].double().numpy()
                np.testing.assert_allclose(y[b, :, i, j].double().numpy(), ref_rnnpool_patch(layer.pool, patch), rtol=1e-5, atol=1e-6)
    # replicate pad: last row copies row oh-1, last column copies column ow-1
    assert torch.equal(y[:, :, oh, :ow], y[:, :, oh - 1, :ow])
    assert torch.equal(y[:, :, :, ow], y[:, :, :, ow - 1])


def test_layer_grid_for_qvga_stem():
    layer = RNNPoolLayer(4, 16, 16)
    assert layer.grid_size(120, 160) == (29, 39)
    assert layer.output_size(120, 160) == (30, 40)


def test_layer_train_and_eval_paths_agree():
    """The autograd path and the fused inference path compute the same numbers."""
    layer = RNNPoolLayer(4, 8, 8)
    _randomise(layer, 6)
    x = torch.randn(1, 4, 24, 28)
    with torch.no_grad():
        fast = layer(x)
    slow = layer(x)  # grad enabled -> the plain step() loop
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-4, atol=1e-5)  # float32, regrouped sums
    slow.sum().backward()
    assert layer.pool.rnn1.W.grad is not None and torch.isfinite(layer.pool.rnn1.W.grad).all()


def test_layer_rejects_too_small_input():
    with pytest.raises(ValueError):
        RNNPoolLayer(1, 2, 2)(torch.zeros(1, 1, 7, 20))
