"""An inference-only form of a detector: batch norm folded, fused kernels, fewer and cheaper ops.

:func:`inference_model` turns a trained :class:`~facedet.detector.RNNPoolFace` into
a module with the same ``forward(x) -> (conf, loc)`` contract that runs the
model's lowered graph (:meth:`RNNPoolFace.lower`: batch norm already folded into
the convolutions by :func:`~facedet.detector.layers.fold_conv_bn`) with

* 1x1 convolutions as one matrix product each (``addmm``: no im2col, no format
  conversion), ReLU6 clamped in place;
* the RNNPool operator and its replicate pad as one call into the fused C kernel
  (:mod:`facedet.rnnpool.fused`; torch ops where it is not built);
* each head's confidence and box convolutions as one convolution, its outputs
  written straight into the final ``conf``/``loc`` tensors (max-out included);
* residual adds in place.

It computes what the training model computes to float rounding (tested); the
training model and its ``state_dict`` are untouched (the folded weights are
copies, so rebuild after changing the weights).  CPU float32 is the target; on
another device or dtype the same module runs with plain torch ops.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet import graph as g
from facedet import native
from facedet.rnnpool import fused

__all__ = ["InferenceModel", "inference_model"]


def inference_model(model: nn.Module) -> "InferenceModel":
    """An inference-only copy of ``model`` (an :class:`~facedet.detector.RNNPoolFace`).

    ``forward(x [B, C, H, W]) -> (conf [B, P, 2], loc [B, P, 4])`` as the model's,
    in eval mode (running batch-norm statistics).  Call it under
    ``torch.inference_mode()`` (or ``no_grad``); it holds no trainable parameters.
    """
    was_training = model.training
    model.eval()
    try:
        graph = model.lower(weights=True)
    finally:
        model.train(was_training)
    device = next(model.parameters()).device
    return InferenceModel(graph, getattr(model, "spec", None)).to(device)


def _native_conv(x: Tensor, w_ohwi: Tensor, b: Tensor, stride: int, padding: int, depthwise: bool, relu6: bool) -> Tensor:
    """The C direct convolution (``facedet/_native.c``): NCHW float32 in and out."""
    x = x.contiguous()
    bsz, c, h, wd = x.shape
    co, k = w_ohwi.shape[0], w_ohwi.shape[1]
    oh, ow = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1
    y = torch.empty(bsz, co, oh, ow)
    if bsz and oh > 0 and ow > 0:
        native.module().conv2d(x.data_ptr(), y.data_ptr(), bsz, c, h, wd, w_ohwi.data_ptr(), b.data_ptr(), co, k, stride, padding, depthwise, relu6)
    return y


def _t(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


class InferenceModel(nn.Module):
    """Executes a lowered graph (weights folded) for inference; see :func:`inference_model`."""

    def __init__(self, graph: g.Graph, spec=None) -> None:
        super().__init__()
        if not graph.weights:
            raise ValueError("inference_model needs a graph lowered with weights")
        self.spec = spec
        self.in_channels = graph.in_channels
        consumers = graph.consumers()
        maxout_of = {op.output: op for op in graph.ops if isinstance(op, g.MaxOut)}
        maxout_src = {op.inputs[0]: op for op in maxout_of.values()}
        head_of = {}  # conv output -> (head, "conf" | "loc")
        for k, h in enumerate(graph.heads):
            conf = maxout_of[h.conf].inputs[0] if h.conf in maxout_of else h.conf
            head_of[conf] = (k, "conf")
            head_of[h.loc] = (k, "loc")
        self._steps: list[tuple] = []
        self._heads: list[dict] = [{} for _ in graph.heads]
        self.pools = nn.ModuleList()
        skip: set[str] = set()
        n = 0

        def buf(name: str, value: Tensor) -> str:
            nonlocal n
            key = f"p{n}_{name}"
            n += 1
            self.register_buffer(key, value)
            return key

        ops = graph.ops
        by_out = {op.output: op for op in ops}
        for i, op in enumerate(ops):
            if op.name in skip:
                continue
            if isinstance(op, g.Conv2d) and op.output in head_of:
                k, part = head_of[op.output]
                self._heads[k][part] = op
                if len(self._heads[k]) == 2:
                    self._steps.append(("head", k) + self._head_step(k, buf, maxout_src, by_out))
                continue
            if isinstance(op, g.MaxOut):
                continue  # folded into its head
            if isinstance(op, g.Conv2d):
                self._steps.append(("conv", op.inputs[0], op.output) + self._conv_fields(op.weight, op.bias, op, buf))
            elif isinstance(op, g.RNNPool):
                pool = g._torch_rnnpool_module(op)
                self.pools.append(pool)
                nxt = consumers[op.output]
                pad = len(nxt) == 1 and isinstance(nxt[0], g.ReplicatePad) and nxt[0].bottom == 1 and nxt[0].right == 1
                out = nxt[0].output if pad else op.output
                if pad:
                    skip.add(nxt[0].name)
                self._steps.append(("rnnpool", op.inputs[0], out, len(self.pools) - 1, op.patch, op.stride, pad))
            elif isinstance(op, g.ReplicatePad):
                self._steps.append(("pad", op.inputs[0], op.output, op.bottom, op.right))
            elif isinstance(op, g.Add):
                a, b_ = op.inputs
                # the residual branch's last conv output is a fresh tensor read only here: add into it
                inplace = b_ if len(consumers[b_]) == 1 and b_ not in head_of else (a if len(consumers[a]) == 1 and a not in head_of else None)
                self._steps.append(("add", a, b_, op.output, inplace))
            elif isinstance(op, g.L2Norm):
                self._steps.append(("l2norm", op.inputs[0], op.output, buf("w", _t(op.weight).view(1, -1, 1, 1)), float(op.eps)))
            else:
                raise TypeError(f"inference_model: no rule for {type(op).__name__}")
        self._graph_input = graph.input
        self._last_use = {}
        for idx, step in enumerate(self._steps):
            for name in self._step_inputs(step):
                self._last_use[name] = idx

    def _head_step(self, k: int, buf, maxout_src, by_out) -> tuple:
        """The head's conf and loc convolutions as one when they read the same tensor with the same
        geometry (else as two); returns the step's fields."""
        conf, loc = self._heads[k]["conf"], self._heads[k]["loc"]
        maxout = conf.output in maxout_src
        same = conf.inputs == loc.inputs and (conf.kernel, conf.stride, conf.padding, conf.groups) == (loc.kernel, loc.stride, loc.padding, loc.groups)
        if same and not (conf.relu6 or loc.relu6):
            fields = self._conv_fields(np.concatenate([conf.weight, loc.weight]), np.concatenate([conf.bias, loc.bias]), conf, buf)
            return ((conf.inputs[0], fields),), conf.out_channels, maxout
        parts = tuple((op.inputs[0], self._conv_fields(op.weight, op.bias, op, buf)) for op in (conf, loc))
        return parts, conf.out_channels, maxout

    @staticmethod
    def _conv_fields(weight: np.ndarray, bias: np.ndarray, op: g.Conv2d, buf) -> tuple:
        """``(method, w_torch, w_native, b, stride, padding, groups, relu6)`` of one convolution.

        ``method``: ``"mm"`` (1x1: one matrix product), ``"native"`` (the C direct
        convolution: depthwise and the stem, 2-3x faster than torch's here,
        ``scripts/bench_speed.py --breakdown``) or ``"torch"``.
        """
        co = weight.shape[0]
        w = _t(weight.transpose(0, 3, 1, 2))  # OHWI -> OIHW
        depthwise = op.groups == op.in_channels == co and op.groups > 1
        if op.kernel == 1 and op.stride == 1 and op.padding == 0 and op.groups == 1:
            return ("mm", buf("w", w.reshape(co, op.in_channels)), None, buf("b", _t(bias)), 1, 0, 1, op.relu6)
        if (depthwise or op.groups == 1) and op.kernel <= 7 and op.stride <= 4 and op.padding < op.kernel:
            return ("native", buf("w", w), buf("wn", _t(weight)), buf("b", _t(bias)), op.stride, op.padding, op.groups, op.relu6)
        return ("torch", buf("w", w), None, buf("b", _t(bias)), op.stride, op.padding, op.groups, op.relu6)

    @staticmethod
    def _step_inputs(step) -> list[str]:
        kind = step[0]
        if kind == "head":
            return [src for src, _ in step[2]]
        if kind == "add":
            return [step[1], step[2]]
        return [step[1]]

    # ------------------------------------------------------------------------------------ forward

    def step_label(self, idx: int) -> str:
        """A readable name of step ``idx``: its kind, output and, for a convolution, how it runs."""
        step = self._steps[idx]
        kind = step[0]
        if kind == "head":
            return f"head {step[1]} (conf + loc)"
        if kind == "conv":
            return f"conv {step[2]} ({step[3]})"
        if kind == "add":
            return f"add {step[3]}"
        return f"{kind} {step[2]}"

    def forward(self, x: Tensor, step_times: list | None = None) -> tuple[Tensor, Tensor]:
        """``(conf, loc)``; with ``step_times`` (a list) also appends ``(step index, seconds)`` per
        step and ``(-1, seconds)`` for assembling the outputs (benchmarks: scripts/bench_speed.py)."""
        env = {self._graph_input: x}
        head_out: list = [None] * len(self._heads)
        fast = x.device.type == "cpu" and x.dtype == torch.float32
        clock = time.perf_counter if step_times is not None else None
        for idx, step in enumerate(self._steps):
            t0 = clock() if clock else 0.0
            kind = step[0]
            if kind == "conv":
                env[step[2]] = self._conv(env[step[1]], *step[3:], fast=fast)
            elif kind == "rnnpool":
                _, src, dst, p, patch, stride, pad = step
                pool = self.pools[p]
                xin = env[src]
                if fast and native.enabled():
                    env[dst] = fused.rnnpool_map(pool, xin, (patch, patch), (stride, stride), pad=pad)
                else:
                    y = pool.forward_map(xin, patch, stride)
                    env[dst] = F.pad(y, (0, 1, 0, 1), mode="replicate") if pad else y
            elif kind == "pad":
                _, src, dst, bottom, right = step
                env[dst] = F.pad(env[src], (0, right, 0, bottom), mode="replicate")
            elif kind == "add":
                _, a, b, dst, inplace = step
                if inplace == b:
                    env[dst] = env[b].add_(env[a])
                elif inplace == a:
                    env[dst] = env[a].add_(env[b])
                else:
                    env[dst] = env[a] + env[b]
            elif kind == "l2norm":
                _, src, dst, wk, eps = step
                env[dst] = self._l2norm(env[src], getattr(self, wk), eps, fast)
            elif kind == "head":
                _, k, parts, nconf, maxout = step
                outs = [self._conv(env[src], *fields, fast=fast) for src, fields in parts]
                head_out[k] = (outs[0] if len(outs) == 1 else torch.cat(outs, 1), nconf, maxout)
            for name in self._step_inputs(step):
                if self._last_use.get(name) == idx and name != self._graph_input:
                    env.pop(name, None)
            if clock:
                step_times.append((idx, clock() - t0))
        t0 = clock() if clock else 0.0
        out = self._assemble(head_out, x.shape[0])
        if clock:
            step_times.append((-1, clock() - t0))
        return out

    def _conv(self, x: Tensor, method: str, wk: str, wnk: str | None, bk: str, stride: int, padding: int, groups: int, relu6: bool, fast: bool) -> Tensor:
        w, b = getattr(self, wk), getattr(self, bk)
        if method == "mm":
            bsz, c, h, wd = x.shape
            if bsz == 1:
                y = torch.addmm(b.unsqueeze(1), w, x.reshape(c, h * wd)).view(1, -1, h, wd)
            else:
                y = torch.baddbmm(b.view(1, -1, 1), w.expand(bsz, -1, -1), x.reshape(bsz, c, h * wd)).view(bsz, -1, h, wd)
            return y.clamp_(0.0, 6.0) if relu6 else y
        if method == "native" and fast and native.enabled():
            return _native_conv(x, getattr(self, wnk), b, stride, padding, groups > 1, relu6)
        y = F.conv2d(x, w, b, stride, padding, 1, groups)
        return y.clamp_(0.0, 6.0) if relu6 else y

    @staticmethod
    def _l2norm(x: Tensor, w: Tensor, eps: float, fast: bool) -> Tensor:
        if fast and native.enabled():
            x = x.contiguous()
            y = torch.empty_like(x)
            bsz, c, h, wd = x.shape
            native.module().l2norm(x.data_ptr(), y.data_ptr(), bsz, c, h * wd, w.data_ptr(), eps)
            return y
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt_().add_(eps)
        return (x / norm).mul_(w)

    @staticmethod
    def _assemble(head_out, bsz: int) -> tuple[Tensor, Tensor]:
        sizes = [o.shape[2] * o.shape[3] for o, _, _ in head_out]
        total = sum(sizes)
        ref = head_out[0][0]
        conf = torch.empty(bsz, total, 2, dtype=ref.dtype, device=ref.device)
        loc = torch.empty(bsz, total, 4, dtype=ref.dtype, device=ref.device)
        start = 0
        for (o, nconf, maxout), n in zip(head_out, sizes):
            t = o.flatten(2).transpose(1, 2)  # [B, hw, nconf + 4]
            if maxout:
                torch.amax(t[:, :, : nconf - 1], dim=2, out=conf[:, start : start + n, 0])
                conf[:, start : start + n, 1] = t[:, :, nconf - 1]
            else:
                conf[:, start : start + n] = t[:, :, :nconf]
            loc[:, start : start + n] = t[:, :, nconf:]
            start += n
        return conf, loc
