"""Pruning: magnitude (unstructured) and structured (whole hidden units, really removed).

- ``magnitude`` zeroes the smallest weights across all Linear, convolution and
  recurrent weight matrices (global L1). The tensors keep their shape: a dense
  ONNX file is as large as before; the gain needs a sparse kernel or a
  compressor, and the report says so.
- ``structured`` removes whole hidden units of the recurrent layers and of the
  MLP head, ranked by the L2 norm of their weights, and rebuilds smaller
  layers: the exported graph has fewer units, fewer parameters, less compute.

Either way the model is fine-tuned afterwards (:func:`plantml.export.finetune.fit`).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from plantml.errors import ConfigError

log = logging.getLogger(__name__)
METHODS = ("magnitude", "structured")


def count_parameters(model: nn.Module, nonzero: bool = False) -> int:
    """Parameters of ``model`` (``nonzero``: only those not pruned to zero).

    A classical model (trees) counts its tree nodes instead.
    """
    inner = getattr(model, "model", model)
    if getattr(inner, "classical", False):
        return int(inner.parameter_count())
    if nonzero:
        return int(sum((p != 0).sum() for p in model.parameters()))
    return int(sum(p.numel() for p in model.parameters()))


def _check_amount(amount: float) -> float:
    amount = float(amount)
    if not 0.0 < amount < 1.0:
        raise ConfigError(f"export.prune.amount must be in (0, 1), got {amount}")
    return amount


# -- magnitude --------------------------------------------------------------------------
def _weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    out = []
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
            out.append((module, "weight"))
        elif isinstance(module, nn.RNNBase):
            out += [(module, n) for n, _ in module.named_parameters() if n.startswith("weight")]
    return out


def magnitude_prune(model: nn.Module, amount: float) -> list[tuple[nn.Module, str]]:
    """Zero the ``amount`` fraction of smallest weights (global L1); masks stay during fine-tuning.

    Returns the pruned (module, name) pairs; call :func:`make_permanent` after fine-tuning.
    """
    amount = _check_amount(amount)
    params = _weights(model)
    if not params:
        raise ConfigError(f"{type(model).__name__} has no Linear/Conv/RNN weights to prune")
    # (an RNN's flat weight list follows: RNNBase.__setattr__ updates it when the mask applies)
    torch_prune.global_unstructured(params, torch_prune.L1Unstructured, amount=amount)
    return params


def make_permanent(params: list[tuple[nn.Module, str]]) -> None:
    """Fold pruning masks into the weights and drop the reparametrization."""
    for module, name in params:
        if hasattr(module, name + "_orig"):
            torch_prune.remove(module, name)
    for module in {id(m): m for m, _ in params}.values():
        if isinstance(module, nn.RNNBase):
            module._init_flat_weights()


# -- structured ---------------------------------------------------------------------------
def _gates(rnn: nn.RNNBase) -> int:
    return {"LSTM": 4, "GRU": 3}.get(rnn.mode, 1)


def _keep(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    return torch.sort(torch.topk(scores, n_keep).indices).values


def _gate_rows(units: torch.Tensor, hidden: int, gates: int) -> torch.Tensor:
    return torch.cat([units + g * hidden for g in range(gates)])


def prune_rnn(rnn: nn.RNNBase, amount: float) -> tuple[nn.RNNBase, torch.Tensor]:
    """A smaller copy of ``rnn`` keeping the strongest hidden units of each layer.

    Every layer keeps the same number of units (PyTorch RNNs have one width);
    which units survive is decided per layer and direction. Returns the new RNN
    and the output columns it kept (for the next layer's input).
    """
    hidden, layers, gates = rnn.hidden_size, rnn.num_layers, _gates(rnn)
    directions = 2 if rnn.bidirectional else 1
    n_keep = max(1, round(hidden * (1.0 - amount)))
    new = type(rnn)(
        rnn.input_size,
        n_keep,
        num_layers=layers,
        bias=rnn.bias,
        batch_first=rnn.batch_first,
        dropout=rnn.dropout,
        bidirectional=rnn.bidirectional,
    )
    new.train(rnn.training)
    kept_in = torch.arange(rnn.input_size)
    with torch.no_grad():
        for layer in range(layers):
            kept_out = []
            for d in range(directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                w_ih = getattr(rnn, "weight_ih" + sfx)
                w_hh = getattr(rnn, "weight_hh" + sfx)
                score = sum(
                    w.reshape(gates, hidden, -1).pow(2).sum((0, 2)) for w in (w_ih, w_hh)
                ) + w_hh.pow(2).sum(0)  # incoming (all gates) and outgoing recurrent weights
                units = _keep(score, n_keep)
                rows = _gate_rows(units, hidden, gates)
                getattr(new, "weight_ih" + sfx).copy_(w_ih[rows][:, kept_in])
                getattr(new, "weight_hh" + sfx).copy_(w_hh[rows][:, units])
                if rnn.bias:
                    for b in ("bias_ih", "bias_hh"):
                        getattr(new, b + sfx).copy_(getattr(rnn, b + sfx)[rows])
                kept_out.append(units + d * hidden)
            kept_in = torch.cat(kept_out)
    return new, kept_in


def prune_mlp(head: nn.Module, kept_in: torch.Tensor, amount: float) -> nn.Module:
    """The MLP head reading only ``kept_in`` columns, its hidden Linear layers narrowed."""
    if isinstance(head, nn.Linear):
        head = nn.Sequential(head)
    layers = list(head)
    linears = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
    out = [*layers]
    cols = kept_in
    with torch.no_grad():
        for j, i in enumerate(linears):
            lin = layers[i]
            last = j == len(linears) - 1
            rows = (
                torch.arange(lin.out_features)
                if last
                else _keep(
                    lin.weight.pow(2).sum(1) + layers[linears[j + 1]].weight.pow(2).sum(0),
                    max(1, round(lin.out_features * (1.0 - amount))),
                )
            )
            new = nn.Linear(len(cols), len(rows), bias=lin.bias is not None)
            new.weight.copy_(lin.weight[rows][:, cols])
            if lin.bias is not None:
                new.bias.copy_(lin.bias[rows])
            out[i] = new
            cols = rows
    return nn.Sequential(*out)


def structured_prune(model: nn.Module, amount: float) -> nn.Module:
    """Remove ``amount`` of the hidden units of a recurrent model (``LSTMModel``) in place."""
    amount = _check_amount(amount)
    rnn = getattr(model, "lstm", None)
    head = getattr(model, "head", None)
    if not isinstance(rnn, nn.RNNBase) or head is None:
        raise ConfigError(
            f"structured pruning knows recurrent models with an MLP head (LSTMModel); "
            f"{type(model).__name__} is not one: use export.prune.method=magnitude"
        )
    before = count_parameters(model)
    model.lstm, kept = prune_rnn(rnn, amount)
    model.head = prune_mlp(head, kept, amount)
    log.info(
        "structured pruning: hidden %d → %d units, parameters %d → %d",
        rnn.hidden_size,
        model.lstm.hidden_size,
        before,
        count_parameters(model),
    )
    return model


def prune_model(model: nn.Module, method: str, amount: float):
    """Prune ``model`` in place; returns the handles :func:`make_permanent` needs (or [])."""
    if method == "magnitude":
        return magnitude_prune(model, amount)
    if method == "structured":
        structured_prune(model, amount)
        return []
    raise ConfigError(f"unknown export.prune.method {method!r}; use one of {', '.join(METHODS)}")
