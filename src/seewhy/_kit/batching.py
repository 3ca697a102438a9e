"""Work split into batches: index ranges, and progress counted in whole images."""

from __future__ import annotations

from collections.abc import Callable, Iterator

__all__ = ["ImageProgress", "chunks"]


def chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive ranges of at most ``size`` covering ``0..total``."""
    for start in range(0, total, size):
        yield start, min(total, start + size)


class ImageProgress:
    """Turns rows of work (perturbed copies, path points) into whole images done.

    ``report`` (a progress callback, or None) is called with the number of
    images newly finished, so a progress bar counts images whatever the method.
    """

    def __init__(self, report: Callable[[int], None] | None, rows_per_image: int) -> None:
        self.report = report
        self.per_image = max(1, rows_per_image)
        self.rows = 0
        self.images = 0

    def advance(self, rows: int) -> None:
        """Record ``rows`` more rows done; report the images they complete."""
        self.rows += rows
        done = self.rows // self.per_image
        if self.report is not None and done > self.images:
            self.report(done - self.images)
        self.images = max(self.images, done)
