"""A yardstick for ``speed.py``: the toy-1 joint-NCE step computed the way the official code does.

The official code takes about 1 s per toy-1 epoch on a 2-core machine (docs/protocols.md §7);
its timing depends on the CPU, while a ratio to this step, run in the same process and round
as ours, carries over to any CPU. Written from the description of the official computation,
not from its code:

* the features of each input are copied to all of its M + 1 candidates and concatenated
  with the candidates' ``u``, and the joint Linear L(20, 10) runs on those rows (row-major);
* the proposal's density sums the K weighted Gaussian densities in linear space;
* sampling draws K x M Gaussian values per input and keeps the one of each sample's component;
* a plain training loop over a DataLoader that collates rows one at a time, one Adam.

The losses are those of ``joint_nce`` (NCE for the energy, the KL objective for the proposal,
which reads the detached features), with the networks of docs/protocols.md §6 and no clamp on the
proposal's scales; ``tests/test_reference_step.py`` checks them against :mod:`ebreg.objectives`.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["ReferenceStyleModel", "reference_epoch_seconds"]


def _branch(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out))


class ReferenceStyleModel(nn.Module):
    """Toy-1 networks of docs/protocols.md §6 (width 10, D = 1) with K proposal components."""

    def __init__(self, components: int = 4, width: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(1, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        self.means, self.log_vars, self.logits = (_branch(width, components) for _ in range(3))
        self.target_net = nn.Sequential(nn.Linear(1, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        self.joint = nn.Linear(2 * width, width)
        self.block = nn.Linear(width, width)
        self.out = nn.Linear(width, 1)

    def proposal(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mixture weights, means and standard deviations, each ``(n, K)``, from sg[h] ``(n, H)``."""
        h = h.detach()
        return (torch.softmax(self.logits(h), 1), self.means(h),
                torch.exp(0.5 * self.log_vars(h)))

    @staticmethod
    def sample(weights: Tensor, means: Tensor, stds: Tensor, num: int) -> Tensor:
        """``num`` samples per input ``(n, num)``: K x num Gaussian draws, one kept per sample."""
        n, k = weights.shape
        with torch.no_grad():
            draws = means.unsqueeze(1) + stds.unsqueeze(1) * torch.randn(n, num, k)  # (n, num, K)
            comp = torch.multinomial(weights, num, replacement=True)  # (n, num)
            return draws.gather(2, comp.unsqueeze(2)).squeeze(2)

    @staticmethod
    def log_density(y: Tensor, weights: Tensor, means: Tensor, stds: Tensor) -> Tensor:
        """``log sum_k pi_k N(y; mu_k, sigma_k^2)`` in linear space: ``y`` ``(n, S)`` -> ``(n, S)``."""
        y, w, mu, s = y.unsqueeze(2), weights.unsqueeze(1), means.unsqueeze(1), stds.unsqueeze(1)
        dens = torch.exp(-((y - mu) ** 2) / (2 * s ** 2)) / torch.sqrt(2 * math.pi * s ** 2)
        return torch.log((w * dens).sum(2))

    def scores(self, h: Tensor, y: Tensor) -> Tensor:
        """``f(h, y)``: features ``(n, H)``, candidates ``(n, S)`` -> ``(n, S)``."""
        n, s = y.shape
        h_rows = h.unsqueeze(1).expand(n, s, h.shape[1]).reshape(n * s, -1)  # one copy per candidate
        u = self.target_net(y.reshape(n * s, 1))
        z = torch.relu(self.joint(torch.cat([h_rows, u], 1)))
        z = torch.relu(self.block(z)) + z
        return self.out(z).view(n, s)

    def losses(self, x: Tensor, y: Tensor, num: int) -> tuple[Tensor, Tensor]:
        """The batch means of the NCE loss and the proposal's KL loss; ``x``, ``y`` ``(n, 1)``."""
        h = self.features(x)
        weights, means, stds = self.proposal(h)
        candidates = torch.cat([y, self.sample(weights, means, stds, num)], 1)  # (n, 1 + M)
        f = self.scores(h, candidates)
        log_q = self.log_density(candidates, weights, means, stds)
        d = f - log_q.detach()
        nce = (torch.logsumexp(d, 1) - d[:, 0]).mean()
        kl = (torch.logsumexp(f[:, 1:].detach() - log_q[:, 1:], 1) - math.log(num)).mean()
        return nce, kl


def reference_epoch_seconds(x: Tensor, y: Tensor, epochs: int, num_samples: int = 1024, seed: int = 0) -> float:
    """Seconds per epoch of ``epochs`` epochs of :class:`ReferenceStyleModel` (batch 32, Adam 1e-3)."""
    torch.manual_seed(seed)
    model = ReferenceStyleModel()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            nce, kl = model.losses(xb, yb, num_samples)
            opt.zero_grad()
            (nce + kl).backward()
            opt.step()
    return (time.perf_counter() - start) / epochs
