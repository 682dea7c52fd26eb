"""Re-initialise a copy's layers, for the model-randomisation test of Adebayo et al. (2018).

A *layer* here is a module that owns parameters (convolution, linear, normalisation, ...). Layers
are listed in the order the forward pass runs them and grouped into *steps*:

- ``"layer"``: one step per layer;
- ``"block"``: one step per block, the name up to its first numeric part (``blocks.5.conv_pw``
  -> ``blocks.5``, ``layer4.1.conv2`` -> ``layer4.1``; ``fc`` stays ``fc``);
- ``"all"``: one step with every layer (the fully randomised model);
- a callable ``name -> step name``.

A layer is re-initialised as PyTorch initialises its type (its ``reset_parameters``: Kaiming-
uniform convolutions and linear layers, batch norm back to identity with fresh running
statistics); a module without ``reset_parameters`` gets normal noise with its parameters' own mean
and standard deviation. The random numbers come from a seed made of ``(seed, layer name)``, so a
layer gets the same weights whichever mode or grouping randomises it, and the global random state
is left as it was. Only copies are randomised: ``randomized_copy`` never touches its argument.

>>> steps = randomization_steps(net, x, group="block")   # [(step name, [layer, ...]), ...]
>>> noise = randomized_copy(net, x)                       # every layer re-initialised
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..capture import eval_mode
from ..errors import ConvsightError
from ..hooks import forward_hooks
from ..models import Network, as_network

GROUPS = ("layer", "block", "all")
Group = str | Callable[[str], str]


def parameterised_layers(net: Network, x: torch.Tensor) -> list[str]:
    """Names of the modules that own parameters, in the order a forward pass of ``x[:1]`` first
    runs them (modules that never run are left out: randomising them changes nothing)."""
    owners = [name for name, mod in net.module.named_modules()
              if any(True for _ in mod.parameters(recurse=False))]
    seen: list[str] = []

    def make(name: str):
        def hook(_mod, _inp, _out) -> None:
            if name not in seen:
                seen.append(name)
        return hook

    with forward_hooks(net.module, {name: make(name) for name in owners}), \
            eval_mode(net.module), torch.no_grad():
        net.module(x[:1])
    if not seen:
        raise ConvsightError("the model has no layer with parameters that runs in the forward "
                             "pass: there is nothing to randomise")
    return seen


def layers_feeding(net: Network, x: torch.Tensor, reads: Sequence[str],
                   layers: Sequence[str] | None = None) -> list[str]:
    """The parameterised layers that run before the layers ``reads`` return their outputs (in a
    forward pass of ``x[:1]``), in the order they finish: the only layers a target that reads
    those outputs (a channel or a neuron, not the class scores) depends on. Layers that run
    after the last of them cannot change it, so randomising them tells nothing. ``layers``:
    ``parameterised_layers(net, x)`` when the caller has it already."""
    owners = set(parameterised_layers(net, x) if layers is None else layers)
    wanted = set(reads)
    finished: list[str] = []

    def make(name: str):
        def hook(_mod, _inp, _out) -> None:
            if wanted:
                finished.append(name)
                wanted.discard(name)
        return hook

    with forward_hooks(net.module, {name: make(name) for name in owners | set(reads)}), \
            eval_mode(net.module), torch.no_grad():
        net.module(x[:1])
    return [name for name in dict.fromkeys(finished) if name in owners]


def _group_name(name: str, group: Group) -> str:
    if callable(group):
        return str(group(name))
    if group == "layer":
        return name
    if group == "all":
        return "all layers"
    parts = name.split(".")
    for i, part in enumerate(parts):
        if re.fullmatch(r"\d+", part):
            return ".".join(parts[:i + 1])
    return name


def randomization_steps(model: Any, x: torch.Tensor, group: Group = "layer",
                        layers: Sequence[str] | None = None) -> list[tuple[str, list[str]]]:
    """``[(step name, [layer, ...]), ...]`` from the output down (the order of cascading
    randomisation): the step whose layers run last comes first. ``layers``:
    ``parameterised_layers(model, x)`` when the caller has it already (one probe pass less)."""
    if not callable(group) and group not in GROUPS:
        raise ConvsightError(f"unknown layer grouping {group!r}: valid groupings are "
                             f"{', '.join(GROUPS)} or a function from layer name to step name")
    layers = parameterised_layers(as_network(model), x) if layers is None else list(layers)
    steps: dict[str, list[str]] = {}
    for name in layers:
        steps.setdefault(_group_name(name, group), []).append(name)
    last_run = {step: max(layers.index(m) for m in members) for step, members in steps.items()}
    return sorted(steps.items(), key=lambda item: -last_run[item[0]])


def _seed_of(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"randomize:{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def randomize_layers(module: nn.Module, names: list[str], seed: int = 0) -> None:
    """Re-initialise the named submodules of ``module`` IN PLACE (use on a copy only).

    Each layer is re-initialised on the CPU under its own seed (a layer elsewhere, or one whose
    ``reset_parameters`` could reach children that hold tensors, on a CPU copy loaded back): the
    same weights on every device, and no device's global random state is touched."""
    for name in names:
        sub = module.get_submodule(name)
        alone = all(t.device.type == "cpu" for _, t in _own_tensors(sub)) and not any(
            True for child in sub.children() for _ in _all_tensors(child))
        fresh = sub if alone else copy.deepcopy(sub).cpu()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            # the CPU generator alone: torch.manual_seed would also queue a seed for every
            # accelerator, recording a stack trace per call (a third of this function's time)
            torch.random.default_generator.manual_seed(_seed_of(seed, name))
            if callable(getattr(fresh, "reset_parameters", None)):
                fresh.reset_parameters()
            else:
                for p in fresh.parameters(recurse=False):
                    std = float(p.std()) if p.numel() > 1 else 0.0
                    p.copy_(torch.randn_like(p) * std + float(p.mean()))
        if fresh is not sub:
            with torch.no_grad():
                for (_, mine), (_, new) in zip(_own_tensors(sub), _own_tensors(fresh)):
                    mine.copy_(new)


def _all_tensors(module: nn.Module):
    yield from module.parameters()
    yield from module.buffers()


def _own_tensors(module: nn.Module):
    """The module's own parameters and buffers (not its children's), in a fixed order."""
    return list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))


def randomized_copy(model: Any, x: torch.Tensor, layers: list[str] | None = None, seed: int = 0
                    ) -> Network:
    """A copy of the network with ``layers`` (default: every parameterised layer) re-initialised."""
    net = as_network(model)
    names = parameterised_layers(net, x) if layers is None else list(layers)
    module = copy.deepcopy(net.module)
    randomize_layers(module, names, seed)
    return dataclasses.replace(net, module=module, info=dict(net.info))
