"""What a network does with one image: activation maps, each unit's strongest place, attributions.

``Attributions`` answers the image page: a layer's activation maps as one picture (and where
each channel's tile lies in it), where a unit responds most on the image and the part of the
input its neuron there sees, attribution pictures for a unit or a class, and how far each class
attribution can be trusted (deletion and insertion AUC, Petsiuk et al. 2018; the randomisation
check, Adebayo et al. 2018: ``convsight.trust_score``).
"""

from __future__ import annotations

import copy
import io
import json
import math
import threading
from typing import Any

import numpy as np
import torch
from PIL import Image

import convsight
from convsight.attribute.registry import method_info
from convsight.capture import capture
from convsight.pictures import (MapGrid, activation_montage, crop, fit_square, png_bytes,
                                render_attribution)
from convsight.targets import Target
from convsight.trust import PAGE_STEPS as TRUST_STEPS
from convsight.trust import TrustScore, evaluate, map_kind, random_reference, trust_score

from .inputs import InputImages
from .layers import Layers
from .workbench import CLASS_METHODS, UNIT_METHODS, NotFound, Workbench, check_method


def trust_summary(score: TrustScore, i: int = 0) -> dict[str, Any]:
    """A trust score as JSON values (NaN, e.g. the correlation with an all-zero map, as null),
    with the line the page shows under the picture."""
    summary = {k: None if isinstance(v, float) and math.isnan(v) else v
               for k, v in score.summary(i).items()}
    return dict(summary, line=score.line(i), steps=TRUST_STEPS)


# the report card under the class attributions: fewer points and samples than the defaults, so
# that it takes seconds, not minutes, on a CPU (docs/explorer.md)
CARD_METRICS = ("road", "infidelity", "max_sensitivity", "random_logit", "sparseness",
                "complexity")
CARD_SETTINGS = {"road": {"percentages": [20, 50, 80]}, "infidelity": {"samples": 5},
                 "max_sensitivity": {"samples": 3}}


class CardCancelled(convsight.ConvsightError):
    """The page asked to stop computing a report card."""


class Attributions:
    """Activations (memoised per image and layer) and attribution pictures of one image."""

    def __init__(self, bench: Workbench, layers: Layers, inputs: InputImages) -> None:
        self.bench, self.layers, self.inputs = bench, layers, inputs
        self.net, self.cache = bench.net, bench.cache
        self._memo: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._guard = threading.Lock()
        self._trust_lock = threading.Lock()  # guards the two below
        self._trust_net: convsight.Network | None = None
        self._references: dict[tuple[str, int, str], dict[str, torch.Tensor]] = {}
        self._cancel: dict[tuple[str, int], threading.Event] = {}

    def activations(self, image_id: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """(C, H, W) activations of ``layer`` and each channel's strongest (y, x)."""
        row = self.layers.layer(layer)
        if not row.spatial:
            raise NotFound(f"layer {layer} has output shape {row.shape_text}: activation maps "
                           "need a layer with channels x height x width")
        key = (image_id, layer)
        with self._guard:
            memo = self._memo.get(key)
        if memo is not None:
            return memo
        x = self.inputs.input_tensor(image_id)
        with self.bench.model_lock, torch.no_grad(), \
                capture(self.net.module, [layer], stop=True) as acts:
            self.net.module(x)
        a = acts[layer][0].float().cpu().numpy()
        flat = a.reshape(a.shape[0], -1).argmax(axis=1)
        where = np.stack(np.unravel_index(flat, a.shape[1:]), axis=1)
        with self._guard:
            if len(self._memo) > 32:
                self._memo.clear()
            self._memo[key] = (a, where)
        return a, where

    def activation_maps(self, image_id: str, layer: str) -> tuple[bytes, MapGrid]:
        acts, _ = self.activations(image_id, layer)
        scale = max(1, 12 // acts.shape[1])
        picture, layout = activation_montage(acts, scale=scale)
        data = self.cache.get_or_make(f"acts/{image_id}/{layer}.png", lambda: png_bytes(picture))
        return data, layout

    def map_layout(self, image_id: str, layer: str) -> MapGrid:
        return self.activation_maps(image_id, layer)[1]

    def strongest(self, image_id: str, layer: str, channel: int) -> tuple[int, int, float]:
        self.layers.channel(layer, channel)
        acts, where = self.activations(image_id, layer)
        y, x = (int(v) for v in where[channel])
        return y, x, float(acts[channel, y, x])

    def unit_box(self, image_id: str, layer: str, channel: int) -> tuple[int, int, int, int] | None:
        """The input box seen by the channel's strongest neuron on this image, clipped to the
        input (None when the layer sees the whole image or its receptive field is unknown)."""
        y, x, _ = self.strongest(image_id, layer, channel)
        rf = self.layers.receptive_field(layer)
        if rf is None or rf.is_global:
            return None
        return rf.clipped_box(y, x)

    def unit_patch(self, image_id: str, layer: str, channel: int, side: int = 160) -> bytes:
        """The part of the input that the channel's strongest neuron sees, enlarged."""
        box = self.unit_box(image_id, layer, channel)

        def make() -> bytes:
            image = Image.open(io.BytesIO(self.inputs.input_png(image_id)))
            return png_bytes(fit_square(crop(image, box), side))
        return self.cache.get_or_make(f"upatch/{image_id}/{layer}/{channel}/{side}.png", make)

    def unit_attribution(self, image_id: str, layer: str, channel: int, method: str,
                         side: int = 160) -> bytes:
        """What in this image drives ``layer:channel`` at its strongest position, shown over the
        neuron's receptive field (it is zero outside it)."""
        check_method(method, UNIT_METHODS)
        y, x, _ = self.strongest(image_id, layer, channel)
        box = self.unit_box(image_id, layer, channel)

        def make() -> bytes:
            attr = self._attribute(image_id, Target.unit(layer, channel, y, x), method)
            return png_bytes(fit_square(crop(render_attribution(attr, "rgb"), box), side))
        return self.cache.get_or_make(f"uattr/{image_id}/{layer}/{channel}/{method}/{side}.png",
                                      make)

    def check_class(self, image_id: str, cls: int) -> None:
        """A class the network scores (404 otherwise, naming the valid ones)."""
        n = self.inputs.class_count(image_id)
        if n == 0:
            raise NotFound("this network does not output class scores: it has no class "
                           "attributions")
        if not 0 <= cls < n:
            raise NotFound(f"class {cls} does not exist: valid classes are 0..{n - 1}")

    def class_attribution(self, image_id: str, cls: int, method: str) -> bytes:
        check_method(method, CLASS_METHODS)
        self.check_class(image_id, cls)

        def make() -> bytes:
            attr = self._attribute(image_id, Target.class_score(cls), method)
            record = method_info(method)
            if record.over_image:
                image = self.net.denormalize(self.inputs.input_tensor(image_id))[0].clamp(0, 1)
                return png_bytes(render_attribution(attr, "heatmap", image=image))
            return png_bytes(render_attribution(attr, record.display))
        return self.cache.get_or_make(f"cattr/{image_id}/{cls}/{method}.png", make)

    def class_trust(self, image_id: str, cls: int, method: str) -> dict[str, Any]:
        """Deletion and insertion AUC of a class attribution beside random maps', and whether it
        passes the randomisation check (``convsight.trust_score``; computed once, then cached)."""
        check_method(method, CLASS_METHODS)
        self.check_class(image_id, cls)

        def make() -> bytes:
            x = self.inputs.input_tensor(image_id)
            with self._trust_lock:
                net = self._trust_network()
                score = trust_score(net, x, Target.class_score(cls), method, steps=TRUST_STEPS,
                                    reference=self._reference(net, x, image_id, cls, method))
            return json.dumps(trust_summary(score)).encode("utf-8")
        data = self.cache.get_or_make(f"trust/{image_id}/{cls}/{method}/{TRUST_STEPS}.json",
                                      make)
        return json.loads(data)

    def class_card(self, image_id: str, cls: int) -> dict[str, Any]:
        """The report card (``convsight.evaluate``) of the class attributions of the page: a row
        per method and the random map's, as HTML and numbers (NaN as null). Computed once, then
        cached; ``cancel_card`` stops a computation between two scores."""
        self.check_class(image_id, cls)
        key = (image_id, cls)

        def make() -> bytes:
            x = self.inputs.input_tensor(image_id)
            stop = self._cancel.setdefault(key, threading.Event())
            stop.clear()

            def check(done: int, total: int) -> None:
                if stop.is_set():
                    raise CardCancelled("report card cancelled")

            try:
                with self._trust_lock:
                    card = evaluate(self._trust_network(), x, Target.class_score(cls),
                                    methods=CLASS_METHODS, metrics=CARD_METRICS, progress=check,
                                    **CARD_SETTINGS)
            finally:
                self._cancel.pop(key, None)
            rows = [{k: None if isinstance(v, float) and math.isnan(v) else v
                     for k, v in r.items()} for r in card.rows]
            return json.dumps({"html": card.to_html(0), "rows": rows,
                               "metrics": list(card.metrics)}).encode("utf-8")
        return json.loads(self.cache.get_or_make(f"card/{image_id}/{cls}/v1.json", make))

    def cancel_card(self, image_id: str, cls: int) -> bool:
        """Stop the report card of (image, class) being computed; False when none is."""
        stop = self._cancel.get((image_id, cls))
        if stop is not None:
            stop.set()
        return stop is not None

    def _reference(self, net: convsight.Network, x: torch.Tensor, image_id: str, cls: int,
                   method: str) -> dict[str, torch.Tensor]:
        """Deletion and insertion of random maps of the method's kind, shared by the methods of
        one kind (gradient, guided and guided Grad-CAM: pixel noise): most of a score's time."""
        key = (image_id, cls, map_kind(method))
        ref = self._references.get(key)
        if ref is None:
            ref = random_reference(net, x, [Target.class_score(cls)], TRUST_STEPS, method)
            if len(self._references) >= 16:
                self._references.clear()
            self._references[key] = ref
        return ref

    def _trust_network(self) -> convsight.Network:
        """The explorer's own copy of the network for trust scores (held by ``_trust_lock``):
        they take seconds, and the pages must not wait for them on ``model_lock``."""
        if self._trust_net is None:
            with self.bench.model_lock:  # no other call's hooks on the module while copying
                self._trust_net = copy.deepcopy(self.net)
        return self._trust_net

    def _attribute(self, image_id: str, target: Target, method: str) -> torch.Tensor:
        """The attribution of ``target`` on the image (one picture's worth, batch removed)."""
        inp = self.inputs.input_tensor(image_id)
        with self.bench.model_lock:
            return convsight.attribute(self.net, inp, target=target, method=method)[0]
