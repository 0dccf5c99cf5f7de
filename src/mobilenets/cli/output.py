"""Text the commands print, where more than one command prints it."""

from __future__ import annotations


def render_top_k(results: list[dict]) -> str:
    """Each image's path, then its top classes with their probabilities."""
    lines = []
    for result in results:
        lines.append(result["image"])
        lines += [f"  {100 * p:6.2f}%  {name}" for name, p in result["top"]]
    return "\n".join(lines)
