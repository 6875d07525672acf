"""The dashboard: a read-only, live web view of one or more runs (FastAPI + uvicorn).

``evoforge dashboard RUN [RUN...]`` serves it; :func:`create_app` builds the app from runs
opened with :func:`open_run` (see docs/dashboard.md). FastAPI and uvicorn are imported only
when the app is built: ``pip install 'evoforge[dashboard]'``.
"""

from __future__ import annotations

from evoforge.dashboard.app import create_app
from evoforge.dashboard.data import RunView, open_run
from evoforge.dashboard.server import serve

__all__ = ["RunView", "create_app", "open_run", "serve"]
