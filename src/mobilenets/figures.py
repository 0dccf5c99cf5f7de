"""The one look of every figure the project draws (the training curves, the confusion matrix, the
side-by-side comparison, `profile`'s roofline, `choose`'s Pareto plot): matplotlib with the Agg
backend (files only, on machines without a display), one style (size, resolution, font sizes, grid,
colours), and the PNG written through `files.write_figure`.

    with figure("roofline.png") as (fig, axes):
        axes.plot(...)  # written when the block ends without an error; closed either way
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import write_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

SIZE = (8, 5.5)  # inches, one panel; a figure of several panels or a matrix asks for its own
DPI = 100
# matplotlib's tab10, named here so that the colours are ours: "C0" is the first, "C9" the last.
COLORS = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:gray",
    "tab:olive",
    "tab:cyan",
)
STYLE: dict[RcKeyType, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 11,
    "axes.grid": True,
    "axes.grid.which": "both",  # the minor grid too, on log axes
    "grid.alpha": 0.3,
    "savefig.dpi": DPI,
}


@contextlib.contextmanager
def figure(
    path: str | os.PathLike, size: tuple[float, float] = SIZE, panels: int = 1
) -> Iterator[tuple[Figure, Any]]:
    """A figure and its axes (a row of `panels` axes when more than one) in the project's style.
    When the block ends without an error the figure is laid out and written to `path` as a PNG
    (its folder created, `files.write_figure`); it is closed either way."""
    import matplotlib
    from cycler import cycler  # matplotlib's own dependency

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The style holds for everything drawn in the block and for the rendering at its end.
    with matplotlib.rc_context({**STYLE, "axes.prop_cycle": cycler(color=COLORS)}):
        fig, axes = plt.subplots(1, panels, figsize=size)
        try:
            yield fig, axes
            fig.tight_layout()
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            write_figure(fig, path, dpi=DPI)
        finally:
            plt.close(fig)
