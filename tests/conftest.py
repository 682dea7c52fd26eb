"""Shared fixtures: the default network (loaded once) and small models."""

from __future__ import annotations

import pytest
import torch

import convsight


@pytest.fixture(scope="session")
def lite0() -> convsight.Network:
    """The default ImageNet EfficientNet-Lite0 (treat as read-only: tests must not modify it)."""
    return convsight.load_model()


@pytest.fixture(scope="session")
def photos():
    return convsight.sample_images()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
