"""The web playground: one self-contained HTML page shipped in the package (no CDN, no external request).

`playground_page()` returns the page's text; the app serves it at `/` unless the server runs with `--no-ui`.
"""

from __future__ import annotations

from importlib import resources


def playground_page() -> str:
    """The page (`playground.html`, package data of `janus_rt.serve`)."""
    return resources.files("janus_rt.serve").joinpath("playground.html").read_text(encoding="utf-8")
