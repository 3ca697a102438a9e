"""Vision-language models: the part that sees the pixels explained, the rest in the score.

:func:`adapt` recognises a vision-language model (a dual encoder such as
CLIP or SigLIP; a generative model such as LLaVA) and hands the backends
the module that sees the pixels; text-side work runs inside the targets'
scores (:class:`seewhy.targets.Prompt`). :class:`seewhy.Explainer` calls it
itself; nothing here needs calling by hand. Importing this package imports
no framework.
"""

from __future__ import annotations

from ..adapters import RECOGNISERS, Adapted, AdaptedModelNote, adapt

__all__ = ["RECOGNISERS", "Adapted", "AdaptedModelNote", "adapt"]
