"""Static cost model of a detector: parameters, dense MACs, priors, activation memory.

Counting conventions (the ones of the reference notes §2.7):

* **Parameters** include batch-norm gamma/beta, L2Norm weights, zeta and nu,
  not batch-norm running statistics.
* **MACs** count convolutions and matrix-vector products only (batch norm,
  activations, L2Norm and element-wise ops are free).  RNNPool is counted
  dense and per patch, as the firmware computes it: ``2 P^2`` RNN1 steps of
  ``k*h1 + h1^2`` and ``4 P`` RNN2 steps of ``h1*h2 + h2^2`` per computed patch.
* **Activation memory, layer by layer.** Layers run one after another and each
  head runs right after the layer it taps.  While a layer runs, its input and
  its output are live, plus the detection outputs (conf + loc) accumulated so
  far, which form the final result.  Intermediate tensors inside a block (the
  expanded MBConv tensor, RNNPool's per-patch state) are streamed and not
  counted, as in the RNNPool paper's RAM figures.  ``peak`` is the maximum of
  the live bytes over all steps, for float32 and for int8 activations.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from facedet.detector import build_model
from facedet.detector.layers import ConvBNAct, DetectionHead, InvertedResidual
from facedet.rnnpool import RNNPoolLayer


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _conv_macs(conv: nn.Conv2d, out_hw: tuple[int, int]) -> int:
    k = conv.kernel_size[0] * conv.kernel_size[1]
    return out_hw[0] * out_hw[1] * conv.out_channels * k * conv.in_channels // conv.groups


def _convbnact_macs(block: ConvBNAct, in_hw: tuple[int, int]) -> int:
    return _conv_macs(block.conv, block.output_size(*in_hw))


def _layer_macs(layer: nn.Module, in_hw: tuple[int, int]) -> int:
    if isinstance(layer, ConvBNAct):
        return _convbnact_macs(layer, in_hw)
    if isinstance(layer, InvertedResidual):
        macs = 0
        if layer.expand is not None:
            macs += _convbnact_macs(layer.expand, in_hw)
        macs += _convbnact_macs(layer.depthwise, in_hw)
        macs += _convbnact_macs(layer.project, layer.output_size(*in_hw))
        return macs
    if isinstance(layer, RNNPoolLayer):
        oh, ow = layer.grid_size(*in_hw)
        p, k = layer.patch_size, layer.in_channels
        h1, h2 = layer.pool.hidden1, layer.pool.hidden2
        per_patch = 2 * p * p * (k * h1 + h1 * h1) + 4 * p * (h1 * h2 + h2 * h2)
        return oh * ow * per_patch
    raise TypeError(f"no MAC rule for {type(layer).__name__}")


def _head_macs(head: DetectionHead, in_hw: tuple[int, int]) -> int:
    macs = 0
    for branch in (head.conf, head.loc):
        if isinstance(branch, nn.Sequential):
            tower, conv = branch[0], branch[1]
            macs += _convbnact_macs(tower, in_hw)
            macs += _conv_macs(conv, tower.output_size(*in_hw))
        else:
            macs += _conv_macs(branch, in_hw)
    return macs


def profile(arch: str, height: int | None = None, width: int | None = None) -> dict[str, Any]:
    """Profile ``arch`` at an input of ``height x width`` (default: its nominal size).

    Returns a JSON-ready dict with keys ``arch``, ``input`` ([H, W, C]),
    ``params``, ``macs``, ``priors``, ``layers`` (one dict per layer and head:
    ``name``, ``type``, ``output`` [H, W, C], ``params``, ``macs``,
    ``act_bytes_f32``/``act_bytes_int8`` (input + output of the step) and
    ``live_bytes_f32``/``live_bytes_int8`` (plus the detection outputs held),
    ``peak_bytes_f32``, ``peak_bytes_int8`` and ``peak_layer``.
    """
    model = build_model(arch)
    spec = model.spec
    h = spec.input_size[0] if height is None else height
    w = spec.input_size[1] if width is None else width
    if h <= 0 or w <= 0:
        from facedet.errors import FacedetError

        raise FacedetError(f"input size must be positive, got {h}x{w}")
    if not model.fits(h, w):
        from facedet.errors import FacedetError

        raise FacedetError(f"input {h}x{w} is too small for '{arch}' (minimum {model.min_input_side()}x{model.min_input_side()})")

    rows: list[dict[str, Any]] = []
    held = 0  # elements of detection outputs produced so far
    cur_hw, cur_c = (h, w), spec.in_channels
    sizes = model.feature_sizes(h, w)
    heads_at = {src: i for i, src in enumerate(model.sources)}

    def add(name: str, kind: str, module: nn.Module, macs: int, in_elems: int, out_shape: tuple[int, int, int]) -> None:
        out_elems = out_shape[0] * out_shape[1] * out_shape[2]
        step = in_elems + out_elems
        rows.append({
            "name": name,
            "type": kind,
            "output": list(out_shape),
            "params": _params(module),
            "macs": int(macs),
            "act_bytes_f32": 4 * step,
            "act_bytes_int8": step,
            "live_bytes_f32": 4 * (step + held),
            "live_bytes_int8": step + held,
        })

    for i, layer in enumerate(model.features):
        if i > max(model.sources):
            break
        out_hw = sizes[i]
        out_c = layer.out_channels
        add(f"features.{i}", type(layer).__name__, layer, _layer_macs(layer, cur_hw), cur_hw[0] * cur_hw[1] * cur_c, (*out_hw, out_c))
        cur_hw, cur_c = out_hw, out_c
        if i in heads_at:
            k = heads_at[i]
            head = model.heads[k]
            fh, fw = head.output_size(*cur_hw)
            add(f"heads.{k}", "DetectionHead", head, _head_macs(head, cur_hw), cur_hw[0] * cur_hw[1] * cur_c, (fh, fw, 6))
            held += fh * fw * 6

    peak = max(rows, key=lambda r: r["live_bytes_int8"])
    return {
        "arch": spec.name,
        "input": [h, w, spec.in_channels],
        "params": _params(model),
        "macs": int(sum(r["macs"] for r in rows)),
        "priors": int(model.priors(h, w).shape[0]),
        "peak_bytes_f32": max(r["live_bytes_f32"] for r in rows),
        "peak_bytes_int8": peak["live_bytes_int8"],
        "peak_layer": peak["name"],
        "layers": rows,
    }


def format_profile(p: dict[str, Any]) -> str:
    """Human-readable table of :func:`profile` output."""
    h, w, c = p["input"]
    lines = [
        f"arch {p['arch']}  input {h}x{w}x{c}  params {p['params']:,}  MACs {p['macs'] / 1e6:.1f} M  priors {p['priors']:,}",
        "",
        f"{'layer':<12} {'type':<17} {'output':>12} {'params':>9} {'MACs':>12} {'act f32':>11} {'act int8':>10} {'live int8':>10}",
    ]
    for r in p["layers"]:
        oh, ow, oc = r["output"]
        lines.append(
            f"{r['name']:<12} {r['type']:<17} {f'{oh}x{ow}x{oc}':>12} {r['params']:>9,} {r['macs']:>12,} "
            f"{r['act_bytes_f32']:>11,} {r['act_bytes_int8']:>10,} {r['live_bytes_int8']:>10,}"
        )
    lines += [
        "",
        f"peak activation memory (layer by layer, at {p['peak_layer']}): "
        f"{p['peak_bytes_f32']:,} B float32, {p['peak_bytes_int8']:,} B int8 ({p['peak_bytes_int8'] / 1024:.1f} KiB)",
    ]
    return "\n".join(lines)
