"""After every public call, also failing ones, the user's model must be exactly as it was.

Each issue adds its public calls to ``CALLS``: ``name -> function(network)``. Calls that are
expected to fail list the exception type in ``FAILING``.
"""

from __future__ import annotations

import pytest
import torch

import convsight
from convsight.capture import capture
from convsight.targets import evaluate
from convsight.units import layer_table

from .tinynets import tiny_net
from .untouched import untouched


def _failing_forward(model):
    module = convsight.as_network(model).module
    with capture(module, ["conv2"]):
        module(torch.zeros(1, 5, 32, 32))  # wrong channel count: forward fails


def _filters(net):
    from convsight.filters import weight_images

    weight_images(net, "conv1")
    weight_images(net, "conv2")
    weight_images(net, "fc", input_shape=(1, 4, 4))


def _filters_bad_shape(net):
    from convsight.filters import weight_images

    weight_images(net, "fc", input_shape=(3, 4, 4))  # fc takes 16 inputs, not 48


CALLS = {
    "layer_table": lambda net: layer_table(net),
    "evaluate": lambda net: evaluate(net, torch.rand(2, 3, 32, 32), "conv3:1@1,1 + class:2"),
    "evaluate_bad_channel": lambda net: evaluate(net, torch.rand(1, 3, 32, 32), "conv3:99"),
    "capture_failing_forward": _failing_forward,
    "filters": _filters,
    "filters_bad_shape": _filters_bad_shape,
}
FAILING = {
    "evaluate_bad_channel": convsight.UnitError,
    "capture_failing_forward": RuntimeError,
    "filters_bad_shape": convsight.UnitError,
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_call_leaves_model_untouched(name):
    module = tiny_net()
    net = convsight.Network(module, input_size=(32, 32))
    with untouched(module):
        if name in FAILING:
            with pytest.raises(FAILING[name]):
                CALLS[name](net)
        else:
            CALLS[name](net)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_bare_module_accepted(name):
    """Every public function also takes a bare nn.Module (wrapped with ImageNet defaults)."""
    module = tiny_net()
    with untouched(module):
        if name in FAILING:
            with pytest.raises(FAILING[name]):
                CALLS[name](module)
        else:
            CALLS[name](module)
