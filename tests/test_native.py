"""The native inference kernels (facedet/_native.c) against the loop oracle and the torch ops they replace.

Every comparison runs on both compiled variants (AVX2+FMA where the CPU has it, and the baseline
one), and the fallback to torch ops when the extension cannot be loaded is simulated.
"""

import json
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facedet import native
from facedet.detector import build_model
from facedet.detector.fast import inference_model
from facedet.rnnpool import RNNPool, RNNPoolLayer, fused
from tests.test_rnnpool import ref_rnnpool_patch

needs_native = pytest.mark.skipif(not native.available(), reason=f"native kernels not built: {native.unavailable_reason()}")
VARIANTS = ["auto", "generic"]


@pytest.fixture(params=VARIANTS)
def variant(request):
    """Run the test with the CPU's best variant, then with the baseline one."""
    if not native.available():
        pytest.skip(f"native kernels not built: {native.unavailable_reason()}")
    mod = native.module()
    name = mod.set_variant(request.param)
    if request.param == "auto" and name == "generic":
        pytest.skip("this CPU runs the generic variant anyway")
    yield name
    mod.set_variant("auto")


def _randomise(module, seed, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def _pool(k, h1, h2, seed, default_scalars=False):
    pool = RNNPool(k, h1, h2)
    _randomise(pool, seed)
    if default_scalars:  # zeta, nu at their RNNPool values: sigmoid 1 and ~0
        with torch.no_grad():
            for cell in (pool.rnn1, pool.rnn2):
                cell.zeta.fill_(100.0)
                cell.nu.fill_(-100.0)
    return pool


def _torch_map(pool, x, p, s):
    with torch.no_grad():
        return pool._forward_map_torch(x, p, s)


# --------------------------------------------------------------------------- fused RNNPool


@pytest.mark.parametrize("k,h1,h2,b,h,w", [(3, 4, 5, 2, 19, 23), (1, 16, 16, 1, 8, 8), (4, 16, 16, 2, 17, 30), (2, 8, 8, 3, 12, 9), (4, 6, 3, 1, 21, 12)])
def test_fused_map_equals_loop_oracle(variant, k, h1, h2, b, h, w):
    pool = _pool(k, h1, h2, seed=h * w + k)
    x = torch.randn(b, k, h, w, generator=torch.Generator().manual_seed(b + h))
    got = fused.rnnpool_map(pool, x, (8, 8), (4, 4))
    oh, ow = (h - 8) // 4 + 1, (w - 8) // 4 + 1
    assert got.shape == (b, 4 * h2, oh, ow)
    for n in range(b):
        for i in range(oh):
            for j in range(ow):
                patch = x[n, :, 4 * i : 4 * i + 8, 4 * j : 4 * j + 8].double().numpy()
                np.testing.assert_allclose(got[n, :, i, j].double().numpy(), ref_rnnpool_patch(pool, patch), rtol=1e-5, atol=5e-6)  # torch: ~2e-6


@pytest.mark.parametrize("ph,pw", [(4, 6), (6, 4), (5, 5), (1, 7), (3, 1)])
def test_fused_non_square_patches_equal_loop_oracle(variant, ph, pw):
    """RNNPool.forward on [N, k, P_h, P_w] patches takes the kernel under no_grad."""
    pool = _pool(2, 5, 3, seed=ph * 10 + pw)
    patches = torch.randn(3, 2, ph, pw, generator=torch.Generator().manual_seed(ph + pw))
    calls = []
    real = fused.rnnpool_map
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused, "rnnpool_map", lambda *a, **kw: calls.append(1) or real(*a, **kw))
        with torch.no_grad():
            got = pool(patches).double().numpy()
    assert calls, "RNNPool.forward did not take the fused kernel"
    for n in range(3):
        np.testing.assert_allclose(got[n], ref_rnnpool_patch(pool, patches[n].double().numpy()), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("h,w,b", [(120, 160, 1), (97, 131, 2), (33, 8, 1)])
def test_fused_equals_torch_path_on_the_shipped_model(variant, h, w, b):
    """Realistic inputs (the stem's ReLU6 output) with the shipped weights: max abs difference ~1e-6."""
    from facedet.weights import default_weights_path, load_weights

    path = default_weights_path("m4")
    model = load_weights(path, "m4")[0].eval() if path is not None else build_model("m4").eval()
    layer = model.features[1]
    gen = torch.Generator().manual_seed(h)
    with torch.no_grad():
        x = model.features[0](torch.randn(b, 1, 2 * h, 2 * w, generator=gen) * 60)
        want = F.pad(layer.pool._forward_map_torch(x, 8, 4), (0, 1, 0, 1), mode="replicate")
        got = layer(x)
    assert got.shape == want.shape and got.is_contiguous()
    assert float((got - want).abs().max()) < 1e-5


def test_fused_pad_and_threads(variant):
    pool = _pool(3, 16, 16, seed=7, default_scalars=True)
    x = torch.randn(2, 3, 41, 57)
    one = fused.rnnpool_map(pool, x, (8, 8), (4, 4), pad=True, threads=1)
    for threads in (2, 3):
        assert torch.equal(fused.rnnpool_map(pool, x, (8, 8), (4, 4), pad=True, threads=threads), one)
    want = F.pad(_torch_map(pool, x, 8, 4), (0, 1, 0, 1), mode="replicate")
    torch.testing.assert_close(one, want, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("gap", [0.0, 9.5, 12.0, -30.0])
def test_fused_gate_forms_and_saturation(variant, gap):
    """Bias gaps on both sides of the one-exp limit (10), and inputs that saturate every gate."""
    pool = _pool(2, 8, 16, seed=3)
    with torch.no_grad():
        pool.rnn1.bias_update.copy_(pool.rnn1.bias_gate - gap)
        pool.rnn2.bias_update.copy_(pool.rnn2.bias_gate + gap / 2)
    gen = torch.Generator().manual_seed(5)
    for scale in (1.0, 200.0):
        x = torch.randn(1, 2, 16, 24, generator=gen) * scale
        got = fused.rnnpool_map(pool, x, (8, 8), (4, 4))
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, _torch_map(pool, x, 8, 4), rtol=1e-5, atol=3e-6)


def test_training_keeps_the_autograd_path():
    layer = RNNPoolLayer(4, 8, 8)
    _randomise(layer, 6)
    x = torch.randn(1, 4, 24, 28)
    calls = []
    real = fused.rnnpool_map
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused, "rnnpool_map", lambda *a, **kw: calls.append(1) or real(*a, **kw))
        y = layer(x)
        y.sum().backward()
        assert calls == [] and layer.pool.rnn1.U.grad is not None
        with torch.inference_mode():
            fast = layer(x)
    assert calls == ([1] if native.available() else [])
    torch.testing.assert_close(fast, y.detach(), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- the fallback


def test_fallback_warns_once_and_runs_torch(monkeypatch):
    """A missing or unloadable extension: one warning naming the cause, same results from torch ops."""
    layer = RNNPoolLayer(3, 4, 5)
    _randomise(layer, 8)
    model = build_model("m4").eval()
    x = torch.randn(1, 3, 20, 24)
    with torch.no_grad():
        before = layer(x)
        fast = inference_model(model)
        img = torch.randn(1, 1, 64, 80)
        conf0, loc0 = fast(img)
    import facedet

    monkeypatch.setitem(sys.modules, "facedet._native", None)  # "import facedet._native" now raises ImportError
    monkeypatch.delattr(facedet, "_native", raising=False)
    monkeypatch.setattr(native, "_loaded", False)
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_warned", False)
    monkeypatch.setattr(native, "_enabled", True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            after = layer(x)
            layer(x)
            conf1, loc1 = inference_model(model)(img)
    reason = native.unavailable_reason()
    assert not native.available() and reason.startswith("ModuleNotFoundError") and "facedet._native" in reason
    messages = [str(w.message) for w in caught if "native kernels" in str(w.message)]
    assert len(messages) == 1 and reason in messages[0] and "torch ops" in messages[0]
    torch.testing.assert_close(after, before, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(conf1, conf0, rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(loc1, loc0, rtol=1e-4, atol=2e-5)
    with pytest.raises(RuntimeError, match="not available"):
        fused.rnnpool_map(layer.pool, x, (8, 8), (4, 4))


def test_switching_off_is_silent(monkeypatch):
    monkeypatch.setattr(native, "_warned", False)
    old = native.set_enabled(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert not native.enabled()
    finally:
        native.set_enabled(old)


# --------------------------------------------------------------------------- convolutions, L2Norm


@pytest.mark.parametrize(
    "c,co,h,w,k,s,depthwise",
    [(1, 4, 37, 45, 3, 2, False), (32, 8, 15, 21, 3, 1, False), (64, 6, 7, 9, 3, 1, False), (3, 5, 17, 23, 5, 2, False),
     (4, 4, 8, 8, 1, 1, False), (24, 13, 9, 10, 1, 2, False), (128, 128, 11, 19, 3, 1, True), (64, 64, 30, 41, 3, 2, True),
     (7, 7, 9, 11, 5, 2, True), (16, 16, 1, 1, 3, 1, True)],
)
def test_native_conv_equals_torch(variant, c, co, h, w, k, s, depthwise):
    from facedet.detector.fast import _native_conv

    gen = torch.Generator().manual_seed(c * co + h)
    x = torch.randn(2, c, h, w, generator=gen)
    wt = torch.randn(co, 1 if depthwise else c, k, k, generator=gen) / k
    b = torch.randn(co, generator=gen)
    for relu6 in (False, True):
        want = F.conv2d(x, wt, b, s, k // 2, 1, c if depthwise else 1)
        if relu6:
            want = want.clamp(0, 6)
        got = _native_conv(x, wt.permute(0, 2, 3, 1).contiguous(), b, s, k // 2, depthwise, relu6)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_native_l2norm_equals_torch(variant):
    from facedet.detector.fast import InferenceModel

    x = torch.randn(2, 32, 7, 13)
    x[0, :, 0, 0] = 0.0  # eps keeps an all-zero pixel finite
    w = torch.rand(1, 32, 1, 1) * 10
    want = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) * w
    torch.testing.assert_close(InferenceModel._l2norm(x, w, 1e-10, fast=True), want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- the inference model


def _with_bn_statistics(model, seed):
    """Random (eval) batch-norm statistics, so that folding them matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    return model.eval()


@pytest.mark.parametrize("arch,h,w,b", [("m4", 240, 320, 1), ("m4", 131, 97, 2), ("qvga", 120, 168, 1), ("quant", 96, 128, 1), ("c", 72, 88, 2)])
@pytest.mark.parametrize("use_native", [True, False])
def test_inference_model_equals_model(arch, h, w, b, use_native):
    torch.manual_seed(0)
    model = _with_bn_statistics(build_model(arch), seed=1)
    keys = list(model.state_dict())
    fast = inference_model(model)
    assert list(model.state_dict()) == keys and model.training is False
    x = torch.randn(b, model.spec.in_channels, h, w) * 50
    old = native.set_enabled(use_native)
    try:
        with torch.inference_mode():
            conf, loc = fast(x)
            native.set_enabled(False)
            want_conf, want_loc = model(x)
    finally:
        native.set_enabled(old)
    assert conf.shape == want_conf.shape == (b, want_conf.shape[1], 2) and loc.shape == want_loc.shape
    scale = max(1.0, float(want_loc.abs().max()), float(want_conf.abs().max()))
    assert float((conf - want_conf).abs().max()) < 2e-5 * scale
    assert float((loc - want_loc).abs().max()) < 2e-5 * scale


def test_inference_model_keeps_training_model_intact():
    model = build_model("m4").train()
    fast = inference_model(model)
    assert model.training and not any(p.requires_grad for p in fast.parameters())
    assert set(model.state_dict()) == set(build_model("m4").state_dict())


def test_cli_reports_missing_kernels_as_one_warning_line(monkeypatch):
    """detect without the extension: the faces still come out, with one 'warning:' line naming the cause."""
    import facedet
    from tests.clitools import messages, run

    monkeypatch.setitem(sys.modules, "facedet._native", None)
    monkeypatch.delattr(facedet, "_native", raising=False)
    monkeypatch.setattr(native, "_loaded", False)
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_warned", False)
    monkeypatch.setattr(native, "_enabled", True)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # the CLI installs its own; restore it after
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        r = run("detect", "tests/data/astronaut.jpg", "--backend", "torch", "--single-scale", "--json", "-", "-q")
    assert r.exit_code == 0, r.output
    lines = [m for m in messages(r, "warning") if "native kernels" in m]
    assert len(lines) == 1 and "facedet._native" in lines[0] and "torch ops" in lines[0]
    assert len(json.loads(r.stdout)[0]["faces"]) >= 1


def test_step_times_label_every_step_and_change_nothing():
    model = build_model("m4").eval()
    fast = inference_model(model)
    x = torch.randn(1, 1, 48, 64)
    times: list = []
    with torch.no_grad():
        conf0, loc0 = fast(x)
        conf1, loc1 = fast(x, step_times=times)
    assert torch.equal(conf0, conf1) and torch.equal(loc0, loc1)
    idx = [i for i, _ in times]
    assert idx == list(range(len(fast._steps))) + [-1] and all(t >= 0 for _, t in times)
    labels = [fast.step_label(i) for i in idx[:-1]]
    assert labels[1].startswith("rnnpool") and sum(label.startswith("head") for label in labels) == 4
