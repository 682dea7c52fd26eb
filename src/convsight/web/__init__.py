"""The convsight explorer: a local web app to browse what every unit of a network sees.

``convsight serve ATLAS_DIR`` (or ``--model M``) runs it; ``create_app`` gives the ASGI app for
other servers. It uses only convsight's public API and serves its own assets (no CDN).

>>> from convsight.web import serve
>>> serve("atlas/", port=8000)                  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve", "SynthesisSettings"]


def __getattr__(name: str) -> Any:  # import the server stack only when it is used
    if name in ("create_app", "serve"):
        from . import app

        return getattr(app, name)
    if name == "SynthesisSettings":
        from .jobs import SynthesisSettings

        return SynthesisSettings
    raise AttributeError(name)
