"""Which picture to believe: faithfulness scores and sanity checks for explanations.

- ``faithfulness``: deletion and insertion curves and their areas (Petsiuk et al. 2018, RISE)
- ``sanity_check``: model-randomisation test (Adebayo et al. 2018), cascading or independent
- ``randomize``: re-initialised copies of a network, layer by layer or block by block
- ``similarity``: Spearman rank correlation, SSIM and HOG correlation of two explanations
- ``trust_score``: one method on some images: deletion and insertion AUC beside random maps,
  rank correlation after randomising the top layer and the whole network, a verdict in words
- ``check``: every method on one image, with the table, the randomisation figure and the curves
- ``metric``: one metric of given attributions per image (ROAD, max-sensitivity, infidelity,
  random logit, sparseness, complexity, pointing game, relevance mass, deletion, insertion)
- ``evaluate``: every metric for several methods, as one table (a report card)

This package computes; its reports draw their pictures with ``convsight.pictures`` only.

>>> auc = convsight.faithfulness(net, x, convsight.attribute(net, x, method='gradcam'))
>>> rep = convsight.sanity_check(net, x, methods=('gradient', 'guided'), group="block")
"""

from .faithfulness import PAGE_STEPS, Faithfulness, faithfulness
from .randomize import randomization_steps, randomized_copy
from .sanity import SanityReport, sanity_check
from .reference import map_kind, random_maps, random_reference
from .scores import TrustScore, trust_score
from .check import TrustCheck, check
from .metrics import METRICS, metric, road_curves
from .evaluate import EvaluationTable, evaluate

__all__ = ["Faithfulness", "faithfulness", "PAGE_STEPS", "randomization_steps", "randomized_copy",
           "SanityReport", "sanity_check", "TrustScore", "map_kind", "random_maps", "random_reference",
           "trust_score",
           "TrustCheck", "check", "METRICS", "metric", "road_curves", "EvaluationTable",
           "evaluate"]
