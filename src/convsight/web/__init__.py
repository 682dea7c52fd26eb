"""The convsight explorer: a local web app to browse what every unit of a network sees.

``convsight serve ATLAS_DIR`` (or ``--model M``) runs it; ``create_app`` gives the ASGI app for
other servers. It serves its own assets (no CDN) and uses no private name of convsight: the
calls of ``convsight`` itself (``Atlas``, ``as_network``, ``attribute``, ``maximize``,
``receptive_fields``, ``load_image``, ...), the drawing of ``convsight.pictures`` and
``convsight.figures``, and public helpers of lower modules: ``capture.capture``,
``capture.eval_mode`` and ``capture.layer_table`` (activations, the layer table),
``filters.weight_images`` and ``filters.weight_kind`` (weights as pictures),
``units.did_you_mean`` and ``models.weights_fingerprint`` (the cache's key), and
``trust.trust_score``, ``trust.random_reference``, ``trust.map_kind`` and
``targets.parse_target`` (how far a class attribution can be trusted), and for the Live page
(``live.py``) ``images.to_tensor``, ``attribute.rectifier_rule`` and
``pictures.montage_columns``.

>>> from convsight.web import serve
>>> serve("atlas/", port=8000)                  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve", "SynthesisSettings"]


def __getattr__(name: str) -> Any:  # import the server stack only when it is used
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "serve":
        from .server import serve

        return serve
    if name == "SynthesisSettings":
        from .jobs import SynthesisSettings

        return SynthesisSettings
    raise AttributeError(name)
