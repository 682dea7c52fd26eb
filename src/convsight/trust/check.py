"""Every question at once for one image: the table, the randomisation figure, the curves.

>>> result = check(net, x, methods=('gradient', 'guided', 'gradcam'))
>>> print(result.table())
>>> save_png(result.sanity.figure(), "check.png"); save_png(result.curves_figure(), "curves.png")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from ..attribute import image_batch
from ..attribute.registry import CHECK, MethodNames, method_info, methods as records
from ..errors import ConvsightError
from ..models import as_network
from ..pictures import Picture, grid, line_chart
from ..progress import ProgressArg, progress_bar
from .faithfulness import DEFAULT_STEPS
from .randomize import Group
from ..targets import fixed_targets
from .sanity import SanityReport, check_methods, sanity_check
from .scores import TrustScore, trust_score

CHECK_METHODS = MethodNames(CHECK)  # read from the method registry (attribute/registry.py)

# the built-in methods' options in the checks (Method.check_options: occlusion's window and stride,
# coarser than attribute's (16, 8) because the cascade computes the map once per step)
CHECK_OPTIONS = {m.name: dict(m.check_options) for m in records() if m.check_options}


@dataclass
class TrustCheck:
    """The scores of each method on one image and the cascading randomisation report."""

    scores: dict[str, TrustScore]
    sanity: SanityReport

    def rows(self) -> list[dict[str, Any]]:
        """One row per method: numbers and the verdict, for tables and web pages."""
        return [dict(s.summary(0), title=method_info(m).title) for m, s in self.scores.items()]

    def table(self) -> str:
        """A plain-text table: method, AUCs beside random maps', rank correlations after
        randomisation, verdict."""
        first = next(iter(self.scores.values()))
        head = (f"{'method':16s} {'deletion':>8s} {'(random)':>8s} {'insertion':>9s} "
                f"{'(random)':>8s} {'rho top':>7s} {'rho all':>7s}  verdict")
        lines = [head, "-" * len(head)]
        for r in self.rows():
            lines.append(f"{r['title']:16s} {r['deletion']:8.3f} {r['random_deletion']:8.3f} "
                         f"{r['insertion']:9.3f} {r['random_insertion']:8.3f} "
                         f"{r['top_layer_correlation']:7.2f} {r['randomized_correlation']:7.2f}  "
                         f"{r['verdict']}")
        lines += ["", "deletion: area under the class probability as the map's top pixels are "
                  "replaced by the mean colour (lower is better);",
                  "insertion: area as they are put back into a blurred copy (higher is better);",
                  "(random): the same for random maps of the method's kind (pixels, Grad-CAM "
                  "grid, occlusion windows);",
                  f"rho top / all: rank correlation (Spearman, |map|) with the map after "
                  f"re-initialising the top layer ({first.top_layer}) / every layer"]
        return "\n".join(lines)

    def curves_figure(self, size: tuple[int, int] = (330, 220)) -> Picture:
        """A row per method: its deletion and insertion curves, with random maps' (dashed)."""
        charts = []
        for m, s in self.scores.items():
            unit = "target / intact" if s.curves["deletion"].relative[0] else "probability"
            for kind in ("deletion", "insertion"):
                c = s.curves[kind]
                xs = c.fractions.numpy()
                series = [(method_info(m).title, xs, c.curves[0].numpy())]
                if kind in s.random_curves:
                    series.append(("random map", xs, s.random_curves[kind][0].numpy()))
                verb = "deleted" if kind == "deletion" else "inserted"
                charts.append(line_chart(series, title=f"{kind}: AUC {float(c.auc[0]):.3f} "
                                         f"({unit})", xlabel=f"fraction of pixels {verb}",
                                         size=size, reference="random map"))
        return grid(charts, ncols=2, pad=6)


def check(model: Any, image: torch.Tensor, target: Any = None,
          methods: Sequence[str] = CHECK_METHODS, steps: int = DEFAULT_STEPS, seed: int = 0,
          group: Group = "block", options: Mapping[str, Mapping[str, Any]] | None = None,
          figure_methods: Sequence[str] | None = None, progress: ProgressArg = True
          ) -> TrustCheck:
    """Scores of every method on one normalised image (3, H, W) or (1, 3, H, W), and the
    cascading randomisation report (``group``: see ``randomize.py``) of ``figure_methods``
    (default: every method but occlusion, which costs one forward pass per window and step; its
    rank correlations after randomising the top layer and every layer are in the scores).
    ``options``: per-method options for ``attribute`` (occlusion: window 32, stride 16 unless
    given)."""
    net = as_network(model)
    x, _ = image_batch(image, net, "check")
    if x.shape[0] != 1:
        raise ConvsightError(f"check takes one image, got a batch of {x.shape[0]}")
    x = x.detach().to(net.device)
    methods = check_methods(methods)
    opts = {m: dict(method_info(m).check_options) for m in methods}
    for m, o in (options or {}).items():
        opts.setdefault(m, {}).update(o)
    targets = fixed_targets(net, x, target)
    scores = {}
    with progress_bar(len(methods), "scores", "method", progress) as report:
        for m in methods:
            scores[m] = trust_score(net, x, targets, m, steps=steps, seed=seed, options=opts[m])
            report(1)
    if figure_methods is None:
        figure_methods = [m for m in methods if not method_info(m).slow] or methods
    drawn = check_methods(figure_methods)
    sanity = sanity_check(net, x, targets, methods=drawn, seed=seed, group=group,
                          options={m: o for m, o in opts.items() if o and m in drawn},
                          progress=progress)
    return TrustCheck(scores, sanity)
