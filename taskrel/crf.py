"""A linear-chain CRF over word positions (for the NER head, ``--crf``).

Masks must be contiguous prefixes (every row's real words come first).
"""

from __future__ import annotations

import torch
from torch import nn


class CRF(nn.Module):
    def __init__(self, num_labels: int):
        super().__init__()
        self.start = nn.Parameter(torch.zeros(num_labels))
        self.end = nn.Parameter(torch.zeros(num_labels))
        self.transitions = nn.Parameter(torch.zeros(num_labels, num_labels))  # [from, to]

    def neg_log_likelihood(self, emissions, labels, mask):
        """Mean over rows of -log p(labels | emissions); rows with no word are skipped.

        emissions (R, W, L); labels (R, W) with anything at masked positions; mask (R, W) bool.
        """
        keep = mask[:, 0]
        emissions, labels, mask = emissions[keep], labels[keep].clamp(min=0), mask[keep]
        if emissions.shape[0] == 0:
            return emissions.sum() * 0.0
        return (self._log_partition(emissions, mask) - self._score(emissions, labels, mask)).mean()

    def _score(self, emissions, labels, mask):
        rows = torch.arange(emissions.shape[0], device=emissions.device)
        maskf = mask.to(emissions.dtype)
        emit = emissions.gather(2, labels.unsqueeze(2)).squeeze(2)  # (R, W)
        score = self.start[labels[:, 0]] + (emit * maskf).sum(1)
        trans = self.transitions[labels[:, :-1], labels[:, 1:]]  # (R, W-1)
        score = score + (trans * maskf[:, 1:]).sum(1)
        last = labels[rows, mask.sum(1) - 1]
        return score + self.end[last]

    def _log_partition(self, emissions, mask):
        alpha = self.start + emissions[:, 0]  # (R, L)
        for t in range(1, emissions.shape[1]):
            step = alpha.unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1)  # (R, L, L)
            alpha = torch.where(mask[:, t : t + 1], torch.logsumexp(step, dim=1), alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    @torch.no_grad()
    def decode(self, emissions, mask) -> list[list[int]]:
        """Viterbi paths, one list of label ids per row (length = its real words)."""
        lengths = mask.sum(1).tolist()
        score = self.start + emissions[:, 0]  # (R, L)
        history = []
        for t in range(1, emissions.shape[1]):
            step = score.unsqueeze(2) + self.transitions  # (R, L, L)
            best, idx = step.max(dim=1)
            history.append(idx)
            score = torch.where(mask[:, t : t + 1], best + emissions[:, t], score)
        score = score + self.end
        paths = []
        for r, n in enumerate(lengths):
            if n == 0:
                paths.append([])
                continue
            tag = int(score[r].argmax())
            path = [tag]
            for t in range(n - 1, 0, -1):
                tag = int(history[t - 1][r, tag])
                path.append(tag)
            paths.append(path[::-1])
        return paths
