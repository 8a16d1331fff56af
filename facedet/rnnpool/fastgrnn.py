"""The FastGRNN cell (full rank), as used inside RNNPool.

One step with input ``x_t`` and state ``h_{t-1}`` (Kusupati et al., NeurIPS 2018, as RNNPool uses it)::

    p   = x_t W + h_{t-1} U              # one pre-activation feeds both gates
    z   = sigmoid(p + b_g)               # gate
    h~  = tanh(p + b_h)                  # candidate
    h_t = z * h_{t-1} + (sigmoid(zeta) * (1 - z) + sigmoid(nu)) * h~

Parameter layout (stable ``state_dict`` keys): ``W`` is ``[input_size, hidden_size]``
(so the product is ``x @ W``), ``U`` is ``[hidden_size, hidden_size]``,
``bias_gate`` and ``bias_update`` are ``[hidden_size]``, ``zeta`` and ``nu`` are
``[1]`` raw scalars (the sigmoid is applied in the forward pass).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FastGRNNCell(nn.Module):
    """FastGRNN cell: ``h_t = z*h + (sigmoid(zeta)*(1-z) + sigmoid(nu)) * tanh(...)``.

    Args:
        input_size: features per time step.
        hidden_size: state size.
        zeta_init, nu_init: initial raw values of ``zeta`` and ``nu``.  The
            defaults (100, -100) make the cell ``z*h + (1-z)*h~`` -- the form
            used by RNNPool, where the two scalars effectively never train.
    """

    def __init__(self, input_size: int, hidden_size: int, zeta_init: float = 100.0, nu_init: float = -100.0) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.W = nn.Parameter(torch.empty(input_size, hidden_size))
        self.U = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias_gate = nn.Parameter(torch.empty(hidden_size))
        self.bias_update = nn.Parameter(torch.empty(hidden_size))
        self.zeta = nn.Parameter(torch.tensor([float(zeta_init)]))
        self.nu = nn.Parameter(torch.tensor([float(nu_init)]))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """W, U ~ 0.1 N(0, 1); both biases 1 (reference initialisation)."""
        with torch.no_grad():
            self.W.normal_(0.0, 0.1)
            self.U.normal_(0.0, 0.1)
            self.bias_gate.fill_(1.0)
            self.bias_update.fill_(1.0)

    def step(self, x_proj: Tensor, h: Tensor) -> Tensor:
        """One step given the already projected input ``x_proj = x_t @ W``.

        Args:
            x_proj: ``[N, hidden]``.
            h: ``[N, hidden]`` previous state.
        Returns:
            ``[N, hidden]`` new state.
        """
        p = x_proj + h @ self.U
        z = torch.sigmoid(p + self.bias_gate)
        h_tilde = torch.tanh(p + self.bias_update)
        coeff = torch.sigmoid(self.zeta) * (1.0 - z) + torch.sigmoid(self.nu)
        return z * h + coeff * h_tilde

    def forward(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        """Run over a whole sequence and return the final state.

        Args:
            x: ``[N, T, input_size]`` batch of sequences.
            h0: ``[N, hidden_size]`` initial state; zeros when None.
        Returns:
            ``[N, hidden_size]`` state after the last step.
        """
        n, t, _ = x.shape
        # Project every time step at once, time-major so that each step reads a
        # contiguous slice: one matmul instead of T small ones.
        x_proj = (x.transpose(0, 1).reshape(t * n, -1) @ self.W).reshape(t, n, self.hidden_size)
        h = x.new_zeros(n, self.hidden_size) if h0 is None else h0
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            for i in range(t):
                h = self.step(x_proj[i], h)
            return h
        return self._forward_inference(x_proj, h)

    def _forward_inference(self, x_proj: Tensor, h: Tensor) -> Tensor:
        """Same arithmetic as :meth:`step`, regrouped into fewer, in-place kernels.

        ``z*h + (sz*(1-z) + sn)*h~ = z*(h - sz*h~) + (sz + sn)*h~``.  All
        per-step tensors live in buffers allocated once: fresh megabyte-sized
        allocations every step cost more than the arithmetic on a small CPU.
        """
        sz = float(torch.sigmoid(self.zeta))
        sn = float(torch.sigmoid(self.nu))
        xg = x_proj + self.bias_gate
        xh = x_proj.add_(self.bias_update)  # x_proj is ours: reuse it
        h = h.clone()
        z, h_tilde = torch.empty_like(h), torch.empty_like(h)
        for i in range(x_proj.shape[0]):
            torch.addmm(xg[i], h, self.U, out=z).sigmoid_()
            torch.addmm(xh[i], h, self.U, out=h_tilde).tanh_()
            h.add_(h_tilde, alpha=-sz).mul_(z).add_(h_tilde, alpha=sz + sn)
        return h

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"
