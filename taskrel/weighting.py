"""How the task losses of a step become gradients: static weights or a dynamic method.

Each method is an ``nn.Module`` keyed by name in ``WEIGHTINGS``; its learnable
weights (if any) are trained by the run's optimizer in their own parameter
group (``lr = weighting_lr``, no weight decay) and saved in the checkpoint.

- ``static``: ``Σ w_t L_t`` with the run's loss weights.
- ``uncertainty`` (Kendall, Gal & Cipolla, 2018, classification form):
  ``Σ exp(-s_t) w_t L_t + s_t / 2`` with learnable ``s_t = log σ_t²`` (init 0);
  the effective weight of a task is ``w_t exp(-s_t)``.
- ``gradnorm`` (Chen et al., 2018): learnable weights, initialised to the static
  weights rescaled to sum to the number of tasks and renormalised so after
  every step; they are moved so that each task's gradient norm on the last
  shared layer approaches the mean norm times ``r_t^alpha``, where ``r_t`` is
  the task's loss ratio ``L_t / L_t(first step)`` relative to the mean ratio.
  The network gets ``Σ w_t L_t`` with the weights held constant.
- ``pcgrad`` (Yu et al., 2020): per-task gradients of ``w_t L_t`` on the shared
  encoder; each is projected off the normal plane of every other task's
  gradient it conflicts with (negative dot product), others in random order,
  and the projections are summed. Heads get their own task's gradient.

``gradnorm`` and ``pcgrad`` compare tasks within a step, so they need the joint
strategy. ``pcgrad`` costs one backward pass per task.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import WEIGHTINGS as NAMES
from .tasks import TaskSpec


class Weighting(nn.Module):
    """Static weights; the base of the dynamic methods."""

    def __init__(self, weights: dict[str, float], model, alpha: float = 1.5):
        super().__init__()
        self.tasks = list(weights)
        self.static = dict(weights)

    def combine(self, losses: dict) -> torch.Tensor:
        return sum(self.static[t] * loss for t, loss in losses.items())

    def backward(self, losses: dict, model) -> torch.Tensor:
        """Put the step's gradients into ``.grad``; returns the (detached) combined loss."""
        total = self.combine(losses)
        total.backward()
        return total.detach()

    def after_step(self) -> None:
        """Called after the optimizer step."""

    def current(self) -> dict[str, float]:
        """The effective weight of each task now (for the epoch record)."""
        return dict(self.static)

    def param_groups(self, lr: float) -> list[dict]:
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "weight_decay": 0.0, "lr": lr}] if params else []


class Uncertainty(Weighting):
    def __init__(self, weights, model, alpha: float = 1.5):
        super().__init__(weights, model, alpha)
        self.log_var = nn.ParameterDict({TaskSpec.parse(t).key: nn.Parameter(torch.zeros(())) for t in self.tasks})

    def combine(self, losses):
        total = 0.0
        for t, loss in losses.items():
            s = self.log_var[TaskSpec.parse(t).key]
            total = total + self.static[t] * torch.exp(-s) * loss + 0.5 * s
        return total

    def current(self):
        return {t: self.static[t] * float(torch.exp(-self.log_var[TaskSpec.parse(t).key].detach())) for t in self.tasks}


def last_shared_layer(model) -> list[nn.Parameter]:
    """The parameters of the encoder's last layer (the last entry of its last ``ModuleList``)."""
    layers = [m for m in model.encoder.modules() if isinstance(m, nn.ModuleList) and len(m)]
    params = list(layers[-1][-1].parameters()) if layers else list(model.encoder.parameters())
    return [p for p in params if p.requires_grad]


class GradNorm(Weighting):
    def __init__(self, weights, model, alpha: float = 1.5):
        super().__init__(weights, model, alpha)
        w = torch.tensor([float(weights[t]) for t in self.tasks])
        if (w <= 0).any():
            raise ValueError(f"gradnorm needs positive initial weights, got {weights}")
        self.index = {t: i for i, t in enumerate(self.tasks)}
        self.w = nn.Parameter(w * len(w) / w.sum())
        self.register_buffer("initial_loss", torch.full((len(w),), float("nan")))
        self.alpha = alpha

    def backward(self, losses, model):
        tasks = list(losses)
        idx = torch.tensor([self.index[t] for t in tasks], device=self.w.device)
        shared = last_shared_layer(model)
        norms = []
        for t in tasks:
            grads = torch.autograd.grad(losses[t], shared, retain_graph=True, allow_unused=True)
            norms.append(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
        with torch.no_grad():
            values = torch.stack([losses[t].detach().float() for t in tasks])
            first = self.initial_loss[idx]
            self.initial_loss[idx] = torch.where(torch.isnan(first), values, first)
            ratio = values / self.initial_loss[idx].clamp_min(1e-12)
            rate = ratio / ratio.mean()
        w = self.w[idx]
        g = w * torch.stack(norms).detach()  # G_t = ||grad_W w_t L_t|| = w_t ||grad_W L_t||
        target = (g.mean() * rate**self.alpha).detach()
        (self.w.grad,) = torch.autograd.grad((g - target).abs().sum(), self.w)
        weights = self.w.detach()
        total = sum(weights[self.index[t]] * losses[t] for t in tasks)
        total.backward()
        return total.detach()

    def after_step(self):
        with torch.no_grad():
            self.w.clamp_(min=1e-3)
            self.w.mul_(len(self.tasks) / self.w.sum())

    def current(self):
        return {t: float(self.w[i].detach()) for t, i in self.index.items()}


class PCGrad(Weighting):
    def backward(self, losses, model):
        params = [p for p in model.parameters() if p.requires_grad]
        shared_ids = {id(p) for p in model.encoder.parameters()}
        is_shared = [id(p) in shared_ids for p in params]
        per_task = [
            [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
            for grads in task_grads(self.static, losses, params)
        ]
        flat = [torch.cat([g.reshape(-1) for g, s in zip(grads, is_shared) if s]) for grads in per_task]
        projected = pcgrad_project(flat)
        offset = 0
        for k, (p, s) in enumerate(zip(params, is_shared)):
            if s:
                n = p.numel()
                p.grad = projected[offset : offset + n].view_as(p).to(p.dtype)
                offset += n
            else:
                p.grad = sum(grads[k] for grads in per_task)
        return sum(self.static[t] * loss.detach() for t, loss in losses.items())


def task_grads(weights: dict, losses: dict, params: list):
    """Yield each task's gradient of ``w_t L_t`` over ``params`` (None where a parameter is not reached), one
    backward pass per task, the graph kept until the last; lazily, so a caller may hold one task's at a time."""
    tasks = list(losses)
    for i, t in enumerate(tasks):
        yield torch.autograd.grad(weights[t] * losses[t], params, retain_graph=i < len(tasks) - 1, allow_unused=True)


def pcgrad_project(grads: list[torch.Tensor]) -> torch.Tensor:
    """Sum of the per-task gradients, each projected off those it conflicts with (random order)."""
    total = torch.zeros_like(grads[0])
    for i, g in enumerate(grads):
        g = g.clone()
        others = [j for j in torch.randperm(len(grads)).tolist() if j != i]
        for j in others:
            dot = torch.dot(g, grads[j])
            if dot < 0:
                g -= dot / grads[j].pow(2).sum().clamp_min(1e-20) * grads[j]
        total += g
    return total


def clipped_per_task_backward(weights: dict, losses: dict, model, max_norm: float) -> torch.Tensor:
    """Put ``Σ_t clip(∇ w_t L_t)`` into ``.grad``: each task's weighted gradient (over every parameter it
    reaches) scaled down to at most ``max_norm`` before the sum (``--clip per-task``), so one task's large
    gradient no longer shrinks the others' steps as clipping the sum does. One backward pass per task."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    for grads in task_grads(weights, losses, params):
        norm = torch.sqrt(sum(g.float().pow(2).sum() for g in grads if g is not None))
        scale = min(1.0, max_norm / (float(norm) + 1e-6))
        for p, g in zip(params, grads):
            if g is not None:
                g = g * scale
                p.grad = g if p.grad is None else p.grad + g
    return sum(weights[t] * loss.detach() for t, loss in losses.items())


WEIGHTINGS = {"static": Weighting, "uncertainty": Uncertainty, "gradnorm": GradNorm, "pcgrad": PCGrad}
assert tuple(WEIGHTINGS) == NAMES, "config.WEIGHTINGS lists the methods for validation and the CLI"


def make_weighting(name: str, weights: dict[str, float], model, alpha: float = 1.5) -> Weighting:
    """The weighting method ``name``, on the model's device (its learnable weights and buffers follow the model)."""
    device = next(model.parameters()).device
    return WEIGHTINGS[name](weights, model, alpha).to(device)
