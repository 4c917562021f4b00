"""Optional packages, imported where they are first needed, with one sentence when one is missing.

mediapipe (``henshin[mediapipe]``) is needed by the mediapipe tracker, the people mask of
``scope=background`` (its selfie segmentation), the face mesh run on reference pictures
(``transfer``, latent examples, ``henshin directions``), and once by the torch tracker to
convert its networks (docs/tracker.md).
"""

from __future__ import annotations

from typing import Any

from henshin.errors import RuntimeUnavailableError


def import_mediapipe(need: str, otherwise: str = "") -> Any:
    """The mediapipe module; ``need`` names what needs it, ``otherwise`` a way round it."""
    try:
        import mediapipe
    except ImportError as error:
        raise RuntimeUnavailableError(
            f"{need} needs the mediapipe package: install it with "
            f"pip install 'henshin[mediapipe]'{', or ' + otherwise if otherwise else ''}."
        ) from error
    return mediapipe
