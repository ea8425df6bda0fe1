"""PGD over a stream of samples, scoring every iterate, with per-sample early exit and batch refill.

Evaluating PGD-100 on 350k images is where a robustness study's GPU hours go. Two facts make most of it
avoidable without changing what is measured under worst-case scoring:

* a sample misclassified at *some* iterate is not robust (the attacker may stop there; AutoAttack's
  convention), so once the prediction at an iterate is wrong, its remaining steps decide nothing;
* the prediction at iterate k comes for free: it is the output the k-th gradient step is computed from.

:func:`pgd_stream` therefore keeps a batch of *active* samples, steps them all, drops those whose current iterate
is misclassified (``early_exit=True``) or that finished their ``steps``, and refills the batch from the queue
so the device stays busy. Every sample's random start is keyed by its own seed, so a result never depends on
the batch size, the batch composition or how samples are split across processes.

For each sample it returns the prediction at the final iterate (``final_pred``; for an early-exited sample: at
the iterate that fooled it), the first iterate that was misclassified (``fooled_at``: 0 = the random start, k =
after k steps; -1 = never) and the gradient steps it cost. Both scorings follow:

* ``worst`` (any iterate): robust = clean-correct and ``fooled_at == -1``;
* ``final`` (the reference codes'): robust = ``final_pred == label``; needs ``early_exit=False``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from pmgaft.attacks.losses import AttackLoss
from pmgaft.attacks.pgd import check_attack_args, check_pgd_options, initial_delta, pgd_step, resolve_loss

Fetch = Callable[[Sequence[int]], tuple[torch.Tensor, torch.Tensor]]  # queue positions -> (x [b,C,H,W], y [b])
Progress = Callable[[int], None]


@dataclass
class StreamResult:
    """Per-sample outcome of :func:`pgd_stream`, in queue order (all int64 CPU tensors of length N)."""

    final_pred: torch.Tensor
    fooled_at: torch.Tensor
    steps_run: torch.Tensor

    def robust(self, labels: torch.Tensor, scoring: str, clean_correct: torch.Tensor | None = None) -> torch.Tensor:
        """[N] bool: robust under ``scoring`` ("worst": never fooled and clean-correct; "final": final iterate)."""
        if scoring == "final":
            return self.final_pred == labels
        ok = self.fooled_at < 0
        return ok if clean_correct is None else ok & clean_correct.bool()


@dataclass
class _Active:
    ids: torch.Tensor  # [b] queue positions
    x: torch.Tensor
    y: torch.Tensor
    delta: torch.Tensor
    done: torch.Tensor  # [b] gradient steps taken

    def keep(self, mask: torch.Tensor) -> "_Active":
        """The rows where ``mask`` [b] (CPU bool) is True; CPU bookkeeping and device tensors alike."""
        if bool(mask.all()):  # most steps: nobody leaves, so no copy of the batch
            return self
        on_device = mask.to(self.x.device)
        return _Active(self.ids[mask], self.x[on_device], self.y[on_device], self.delta[on_device], self.done[mask])

    def extend(self, other: "_Active") -> "_Active":
        return _Active(*(torch.cat([a, b]) for a, b in zip(
            (self.ids, self.x, self.y, self.delta, self.done),
            (other.ids, other.x, other.y, other.delta, other.done))))


def pgd_stream(model: Callable[[torch.Tensor], torch.Tensor], fetch: Fetch, n: int, *, eps: float,
               step_size: float, steps: int, seeds: torch.Tensor, batch_size: int, early_exit: bool,
               loss: str | AttackLoss = "ce", norm: str = "linf", random_start: bool = True,
               reduction: str = "sum", device: torch.device | str = "cpu",
               progress: Progress | None = None) -> StreamResult:
    """PGD-``steps`` on the ``n`` samples ``fetch`` serves (positions 0..n-1); see the module docstring.

    ``model`` maps [0, 1] images to logits; ``seeds`` [n] are the per-sample random-start seeds
    (:func:`pmgaft.attacks.pgd.sample_seeds`). ``progress(k)`` is called with the number of samples finished.
    """
    check_pgd_options(norm, reduction)
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} samples")
    loss_fn = resolve_loss(loss)
    device = torch.device(device)
    final_pred = torch.full((n,), -1, dtype=torch.int64)
    fooled_at = torch.full((n,), -1, dtype=torch.int64)
    steps_run = torch.zeros(n, dtype=torch.int64)
    queue = 0
    active: _Active | None = None
    waiting: list[_Active] = []  # finished all steps: their final iterate still needs one forward

    def admit(k: int) -> _Active:
        nonlocal queue
        ids = torch.arange(queue, min(queue + k, n))
        queue += len(ids)
        x, y = fetch(ids.tolist())
        x, y = x.to(device, non_blocking=True).float(), y.to(device, non_blocking=True)
        check_attack_args(x, eps=eps, step_size=step_size, steps=steps)
        delta = initial_delta(x, eps, norm, random_start=random_start, seeds=seeds[ids])
        return _Active(ids, x, y, delta, torch.zeros(len(ids), dtype=torch.int64))

    def finish_waiting(force: bool) -> None:
        while waiting and (force or sum(len(w.ids) for w in waiting) >= batch_size):
            batch = waiting.pop(0)
            while waiting and len(batch.ids) < batch_size:
                batch = batch.extend(waiting.pop(0))
            with torch.no_grad():
                pred = model(batch.x + batch.delta).argmax(1).cpu()
            ids = batch.ids
            final_pred[ids] = pred
            wrong = (pred != batch.y.cpu()) & (fooled_at[ids] < 0)
            fooled_at[ids[wrong]] = steps
            if progress:
                progress(len(ids))

    while queue < n or (active is not None and len(active.ids)):
        room = batch_size - (0 if active is None else len(active.ids))
        if room > 0 and queue < n:
            fresh = admit(room)
            active = fresh if active is None else active.extend(fresh)
        if steps == 0:  # nothing to step: the start is the final iterate
            waiting.append(active)
            active = None
            finish_waiting(force=False)
            continue
        delta, output = pgd_step(model, active.x, active.y, active.delta, eps=eps, step_size=step_size,
                                 loss_fn=loss_fn, norm=norm, reduction=reduction)
        pred = output.argmax(1).cpu()
        ids = active.ids
        wrong = (pred != active.y.cpu()) & (fooled_at[ids] < 0)
        fooled_at[ids[wrong]] = active.done[wrong]  # the iterate the step started from was misclassified
        steps_run[ids] += 1
        active.delta, active.done = delta, active.done + 1
        leave = wrong if early_exit else torch.zeros_like(wrong)
        if early_exit and bool(leave.any()):
            final_pred[ids[leave]] = pred[leave]  # the fooling iterate's prediction
            if progress:
                progress(int(leave.sum()))
        complete = (active.done >= steps) & ~leave
        if bool(complete.any()):
            waiting.append(active.keep(complete))
        active = active.keep(~leave & ~complete)
        finish_waiting(force=False)
    finish_waiting(force=True)
    return StreamResult(final_pred, fooled_at, steps_run)
