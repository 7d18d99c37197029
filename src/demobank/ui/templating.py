"""The Jinja templates of the plugin's pages (``ui/templates``), shared by every router of the app."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
