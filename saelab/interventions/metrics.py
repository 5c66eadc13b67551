"""Scalar metrics of a forward pass, the quantity that attribution explains.

A metric is a callable ``metric(logits, tokens) -> Tensor`` of 0 dimensions, differentiable in
``logits``. The builders here sum over the batch rows, so the gradient of the sum with respect
to one row's activations is that row's own gradient (rows never interact in a forward pass):
one backward pass attributes every row at once. A metric must read each row from that row's
own logits and tokens only, never from its index in the batch: integrated gradients and
ablations evaluate rows in batches of other shapes. Positions may be negative (``-1`` is the last).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from saelab.forward.losses import next_token_nll

Metric = Callable[[Float[Tensor, "batch pos vocab"], Int[Tensor, "batch pos"]], Tensor]
"""``metric(logits, tokens) -> 0-d tensor``; attribution explains its change."""


def check_scalar(value: object) -> Tensor:
    """``value`` if it is a 0-d floating tensor, else a clear ValueError."""
    if not isinstance(value, Tensor):
        raise ValueError(f"metric must return a scalar tensor, got {type(value).__name__}")
    if value.ndim != 0:
        raise ValueError(
            f"metric must return a scalar tensor, got shape {tuple(value.shape)}; "
            "reduce it, e.g. with .sum() over the batch rows"
        )
    if not value.dtype.is_floating_point:
        raise ValueError(f"metric must return a floating-point scalar tensor, got dtype {value.dtype}")
    return value


def _position(position: int, n_pos: int) -> int:
    if not -n_pos <= position < n_pos:
        raise ValueError(f"position {position} is out of range for {n_pos} positions")
    return position % n_pos


def _token(token: int, d_vocab: int, what: str) -> int:
    if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < d_vocab:
        raise ValueError(f"{what} must be a token id in 0..{d_vocab - 1}, got {token!r}")
    return token


def logit_diff(position: int, good_token: int, bad_token: int) -> Metric:
    """``logits[:, position, good] - logits[:, position, bad]``, summed over rows.

    Positive attribution then means "pushes the model towards ``good_token``".
    """

    def metric(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]) -> Tensor:  # noqa: ARG001
        pos = _position(position, logits.shape[1])
        good = _token(good_token, logits.shape[-1], "good_token")
        bad = _token(bad_token, logits.shape[-1], "bad_token")
        return (logits[:, pos, good] - logits[:, pos, bad]).float().sum()

    return metric


def token_logprob(position: int, token: int) -> Metric:
    """``log p(token | tokens[:, :position + 1])`` read at ``position``, summed over rows.

    For a token that is not in the input: the prompt's actual continuation, say, with the
    prompt ending at ``position=-1``. The same token for every row (a metric must not depend
    on a row's index: integrated gradients and ablations run rows in other batches); for a
    continuation per row, append it to each row and use :func:`next_token_logprob`.
    """

    def metric(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]) -> Tensor:  # noqa: ARG001
        pos = _position(position, logits.shape[1])
        target = _token(token, logits.shape[-1], "token")
        return F.log_softmax(logits[:, pos].float(), dim=-1)[:, target].sum()

    return metric


def next_token_loss(position: int) -> Metric:
    """Cross-entropy of the input's own next token, ``-log p(tokens[:, position + 1])`` read
    at ``position``, summed over rows. ``position=-2`` is the prediction of the last token.

    Positive attribution means "raises the loss"; :func:`next_token_logprob` is its negative.
    """

    def metric(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]) -> Tensor:
        pos = _position(position, logits.shape[1])
        if pos + 1 >= tokens.shape[1]:
            raise ValueError(
                f"position {position} is the last one of {tokens.shape[1]}: it has no next token in the input; "
                "use token_logprob(position, token) for a continuation"
            )
        return next_token_nll(logits[:, pos : pos + 2], tokens[:, pos : pos + 2]).sum()

    return metric


def next_token_logprob(position: int) -> Metric:
    """``log p(tokens[:, position + 1])`` read at ``position``: the negative of :func:`next_token_loss`."""
    loss = next_token_loss(position)

    def metric(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]) -> Tensor:
        return -loss(logits, tokens)

    return metric


def evaluate(metric: Metric, logits: Tensor, tokens: Tensor) -> Tensor:
    """``metric(logits, tokens)``, checked to be a scalar."""
    return check_scalar(metric(logits, tokens))


def per_row(metric: Metric, logits: Tensor, tokens: Tensor) -> Float[Tensor, " rows"]:
    """The metric of each row of ``logits`` on its own (``tokens`` has one row or as many as logits)."""
    rows = []
    for i in range(logits.shape[0]):
        row_tokens = tokens[i : i + 1] if tokens.shape[0] == logits.shape[0] else tokens
        rows.append(evaluate(metric, logits[i : i + 1], row_tokens).detach())
    return torch.stack(rows) if rows else torch.zeros(0)
