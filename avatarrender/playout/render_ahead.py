"""What the playout needs from a renderer: a segment.yaml rendered ahead of air, and the filler.

The playout never imports the renderer. Whoever starts it (the ``avatarrender playout`` command,
or a Python program) hands it an object with this interface;
:class:`avatarrender.render.ProcessRenderer` is the one the command uses (each render-ahead in
its own process). A render service can offer the same two methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

__all__ = ["RenderJob", "Renderer"]


class RenderJob(Protocol):
    """One render running in the background."""

    def poll(self) -> bool:
        """True once the render has ended, successfully or not. Never blocks."""
        ...

    def result(self) -> None:
        """After :meth:`poll` returned True: return if the rendition is complete.

        Raises
        ------
        AvatarRenderError
            The render failed; the message is its error line (the one the CLI would print).
        """
        ...

    def terminate(self) -> None:
        """Stop the render if it is still running and wait for it to end."""
        ...


class Renderer(Protocol):
    """Renders segment.yaml files into rendered folders for the playout."""

    def render_ahead(self, spec_path: Path, out_dir: Path) -> RenderJob:
        """Start rendering ``spec_path`` into ``out_dir`` (a rendition, see
        :mod:`avatarrender.rendition`) in the background; return at once."""
        ...

    def render_filler(self, spec_path: Path, duration_s: float, root: Path) -> Path:
        """Render the idle loop of ``spec_path`` (``duration_s`` seconds, no speech, captions or
        TV) into a folder under ``root``, or find it already there; return the folder.

        Raises
        ------
        AvatarRenderError
            The spec is invalid or the render fails.
        """
        ...
