"""Mining dataset examples: the top-k images of every unit of some layers, in one streaming pass.

>>> import convsight
>>> from convsight.mining import photo_folder
>>> photo_folder("photos", n=300)
>>> atlas = convsight.mine(convsight.load_model(), "photos", ["blocks.3", "blocks.10"], out="atlas")
>>> atlas.top("blocks.3", 0)[:2]

Modules: ``topk`` (streaming top-k per channel), ``reduce`` (per-channel maxima inside forward
hooks), ``data`` (image sources and loader), ``checkpoint`` (atomic checkpoints), ``distributed``
(torchrun sharding and exact merge), ``run`` (``mine``), ``figures`` (pictures), ``photos`` (a
folder of real photos for demos and tests).
"""

from .photos import photo_folder
from .run import mine
from .topk import TopK, channel_maxima

__all__ = ["mine", "photo_folder", "TopK", "channel_maxima"]
