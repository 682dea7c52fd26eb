"""A report card: several metrics of several methods' maps on the same images, as one table.

>>> card = evaluate(net, x, methods=('gradient', 'gradcam'), metrics=("road", "sparseness"))
>>> print(card.to_markdown())          # median over the images, a row per method
>>> card.array("road")                  # (methods, N) numbers
>>> card.figure()                       # the table as a picture, best per column in green

Gradient-like maps (gradient, guided, deconv, SmoothGrad, guided Grad-CAM) are scored by their
magnitude, as ``trust_score`` ranks them; Grad-CAM and occlusion by their value. The row
``random map`` scores a uniform random number per pixel (seeded) with the metrics that read the
map alone or run the model on it; the metrics that explain again (max-sensitivity, random logit,
randomisation) have no random row.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..attribute import attribute, image_batch
from ..models import as_network
from ..pictures import Picture, png_bytes, table_picture
from ..progress import ProgressArg, progress_bar
from ..targets import Target
from .metrics import HIGHER_IS_BETTER, NEEDS_METHOD, NEEDS_REGION, check_name, metric
from ..attribute.registry import CARD, MethodNames, method_info
from ..targets import fixed_targets
from .sanity import check_methods, method_options
from .scores import ranking_map

DEFAULT_METHODS = MethodNames(CARD)  # read from the method registry (attribute/registry.py)
DEFAULT_METRICS = ("deletion", "insertion", "road", "infidelity", "max_sensitivity",
                   "random_logit", "sparseness", "complexity")
RANDOM = "random map"


@dataclass
class EvaluationTable:
    """``values[metric][method]``: a tensor (N,) per image; ``random[metric]``: the same for
    random maps (absent where none makes sense)."""

    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    values: dict[str, dict[str, torch.Tensor]]
    random: dict[str, torch.Tensor]
    targets: list[Target]
    higher: dict[str, bool] = field(default_factory=dict)  # per metric: higher is better

    def better(self, metric_name: str) -> bool:
        """Whether a higher value of the metric is better (ROAD: by its ``order``)."""
        return self.higher.get(metric_name, HIGHER_IS_BETTER[metric_name])

    def array(self, metric_name: str) -> np.ndarray:
        """(methods, N) values of one metric, methods in ``self.methods`` order."""
        return np.stack([self.values[metric_name][m].numpy() for m in self.methods])

    def _cell(self, metric_name: str, method: str, image: int | None) -> float:
        v = self.random.get(metric_name) if method == RANDOM else \
            self.values[metric_name][method]
        if v is None:
            return float("nan")
        v = v.double()
        return float(v[image]) if image is not None else float(np.nanmedian(v.numpy())) \
            if not torch.isnan(v).all() else float("nan")

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One dict per method (then the random map): its title and the median of each metric."""
        return self.image_rows(None)

    def image_rows(self, image: int | None) -> list[dict[str, Any]]:
        names = list(self.methods) + ([RANDOM] if self.random else [])
        return [dict({"method": method_info(m).title if m != RANDOM else m},
                     **{k: self._cell(k, m, image) for k in self.metrics}) for m in names]

    def _text(self, image: int | None, arrows: tuple[str, str] = ("↑", "↓")
              ) -> tuple[list[str], list[list[str]]]:
        header = ["method"] + [f"{k} {arrows[0] if self.better(k) else arrows[1]}"
                               for k in self.metrics]
        body = [[r["method"]] + ["n/a" if math.isnan(r[k]) else f"{r[k]:.3f}"
                                 for k in self.metrics] for r in self.image_rows(image)]
        return header, body

    def to_markdown(self, image: int | None = None) -> str:
        """A Markdown table (median over the images, or image ``image``); ↑: higher is better."""
        header, body = self._text(image)
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])

    def to_html(self, image: int | None = None) -> str:
        header, body = self._text(image)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                       for r in body)
        return f'<table class="card"><tr>{head}</tr>{rows}</table>'

    def shades(self, image: int | None = None) -> list[list[float | None]]:
        """Per cell, 1 for the best method of its column and 0 for the worst (the random row
        is compared too); None where there is no number."""
        rows = self.image_rows(image)
        out: list[list[float | None]] = [[None] * len(self.metrics) for _ in rows]
        for c, k in enumerate(self.metrics):
            vals = np.array([r[k] for r in rows], dtype=float)
            ok = np.isfinite(vals)
            if ok.sum() < 2 or np.ptp(vals[ok]) == 0:
                continue
            s = (vals - vals[ok].min()) / np.ptp(vals[ok])
            for r in range(len(rows)):
                if ok[r]:
                    out[r][c] = float(s[r] if self.better(k) else 1 - s[r])
        return out

    def figure(self, image: int | None = None) -> Picture:
        header, body = self._text(image, ("^", "v"))  # the bitmap font has no arrows
        what = "median over the images" if image is None else f"image {image}"
        return table_picture(header, body, self.shades(image),
                             title=f"report card ({what}; ^ higher / v lower is better; green: "
                                   "best of the column)")

    def _repr_png_(self) -> bytes:
        return png_bytes(self.figure())


def evaluate(model: Any, images: torch.Tensor, target: Any = None,
             methods: Sequence[str] = DEFAULT_METHODS, metrics: Sequence[str] = DEFAULT_METRICS,
             options: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0,
             progress: ProgressArg = False, **settings: Any) -> EvaluationTable:
    """Every metric of every method's map of ``images``. ``options``: per-method options for
    ``attribute``; ``settings``: per-metric settings, ``{"road": {"percentages": [...]}}``, or
    a box/mask for the localisation metrics (``box=``, ``mask=``, passed to both)."""
    methods = check_methods(methods)
    metrics = tuple(check_name(k) for k in metrics)
    net = as_network(model)
    x, _ = image_batch(images, net, "evaluate")
    x = x.detach().to(net.device)
    targets = fixed_targets(net, x, target)
    region = {k: settings.pop(k) for k in ("box", "mask") if k in settings}
    per_metric = {k: dict(settings.pop(k, None) or {}) for k in metrics}
    if settings:
        raise_unknown(settings)
    for k in NEEDS_REGION:
        if k in metrics:
            per_metric[k] = dict(region, **per_metric[k])
    values: dict[str, dict[str, torch.Tensor]] = {k: {} for k in metrics}
    gen = torch.Generator().manual_seed(seed)
    noise_map = torch.rand((x.shape[0], 1, *x.shape[2:]), generator=gen).to(x.device)
    random: dict[str, torch.Tensor] = {}
    with progress_bar(len(methods) * len(metrics), "report card", "score", progress) as report:
        for m in methods:
            opts = method_options(m, (options or {}).get(m), seed)
            signed = attribute(net, x, targets, method=m, **opts)
            attr = ranking_map(m, signed)
            for k in metrics:
                # metrics that explain again compare the method's own (signed) maps
                extra = {"method": m, "options": opts} if k in NEEDS_METHOD else {}
                values[k][m] = metric(k, net, x, signed if extra else attr, targets, **extra,
                                      **per_metric[k])
                report(1)
        for k in metrics:
            if k not in NEEDS_METHOD:
                random[k] = metric(k, net, x, noise_map, targets, **per_metric[k])
    higher = {k: HIGHER_IS_BETTER[k] for k in metrics}
    if "road" in metrics and per_metric["road"].get("order") == "morf":
        higher["road"] = False  # most relevant first: the probability should fall
    return EvaluationTable(methods, metrics, values, random, targets, higher)


def raise_unknown(settings: Mapping[str, Any]) -> None:
    from ..errors import ConvsightError
    raise ConvsightError(f"evaluate takes settings per metric ({{'road': {{...}}}}) or box= / "
                         f"mask=; not {', '.join(sorted(settings))} (or those metrics are not "
                         "in metrics=)")
