"""The dashboard's web application: HTML pages, their live parts, a JSON API and the
security around them (token, allowed hosts, Content-Security-Policy)."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hmac
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from evoforge.dashboard import charts
from evoforge.dashboard.data import STATUSES, RunView
from evoforge.errors import EvoforgeError, ProgramFilesError, StorageError
from evoforge.program_files import is_packed, tree_diff, unpack
from evoforge.report import duration, parent_choice

HERE = Path(__file__).parent
COOKIE = "evoforge_dashboard"
#: no inline script or style, nothing from elsewhere, no frames, no plugins
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_SHOW_CHARS = 100_000  # longest text shown on a page (code, diff, prompt, artifact)
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def _missing(what: str) -> EvoforgeError:
    return EvoforgeError(f"the dashboard needs {what}: pip install 'evoforge[dashboard]'")


def create_app(runs: Sequence[RunView], *, token: str | None = None,
               allowed_hosts: Sequence[str] = (), poll_interval: float = 0.5) -> Any:
    """The FastAPI app showing ``runs`` (opened read-only by the caller; the app closes them
    on shutdown). ``token``: required on every request (``?token=`` once, then a cookie, or
    ``Authorization: Bearer``). Without a token only requests whose Host is a loopback name
    (or one of ``allowed_hosts``) are answered, which stops DNS-rebinding pages."""
    try:
        import jinja2
        from fastapi import FastAPI, HTTPException, Request
        from fastapi.responses import (
            HTMLResponse,
            JSONResponse,
            PlainTextResponse,
            RedirectResponse,
            Response,
        )
        from fastapi.staticfiles import StaticFiles
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import StreamingResponse
    except ImportError as e:
        raise _missing("fastapi and uvicorn") from e
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import DiffLexer, TextLexer, get_lexer_for_filename
        from pygments.util import ClassNotFound
    except ImportError as e:
        raise _missing("pygments") from e

    # route signatures are read by FastAPI from this module's globals (postponed annotations)
    globals().setdefault("Request", Request)
    views = list(runs)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = charts.fmt
    env.filters["duration"] = lambda s: duration(s or 0)
    env.filters["usd"] = lambda v: f"${v:.4f}" if v else "$0"
    env.filters["thousands"] = lambda v: f"{int(v):,}"
    env.globals["STATUSES"] = STATUSES
    env.globals["qs"] = lambda **kw: urlencode({k: v for k, v in kw.items()
                                                if v is not None and v != ""})
    env.globals["STATUS_COLOR"] = charts.STATUS_COLOR
    formatter = HtmlFormatter(cssclass="hl", linenos="table")
    plain = HtmlFormatter(cssclass="hl")
    code_css = plain.get_style_defs(".hl")
    # load Pygments' lexers and compile the templates now, not on somebody's first page
    highlight("x = 1\n", DiffLexer(), plain)
    for v in views:
        with contextlib.suppress(ClassNotFound):
            get_lexer_for_filename(v.language)
    for name in env.list_templates():
        env.get_template(name)
    stopping = threading.Event()  # set by the server before it stops: streams end

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        stopping.set()  # ends the event streams
        for v in views:
            v.close()

    app = FastAPI(title="evoforge dashboard", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.views = views
    app.state.stopping = stopping

    hosts = {h.lower() for h in (*_LOOPBACK, *allowed_hosts)}

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                    ) -> Response:
        set_cookie = False
        if token is not None:
            given = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _secure(PlainTextResponse(
                    "the dashboard needs its token: open the URL it printed (…?token=…)",
                    status_code=401))
            set_cookie = request.query_params.get("token") is not None
            if set_cookie and request.method == "GET":  # the token leaves the address bar
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                # one leading slash: "//host" would be a redirect to another site
                target = "/" + request.url.path.lstrip("/") + ("?" + urlencode(rest) if rest else "")
                redirect = RedirectResponse(target, status_code=303)
                redirect.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
                return _secure(redirect)
        else:
            host = (request.headers.get("host") or "").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in hosts:
                return _secure(PlainTextResponse(
                    "unexpected Host header; open the dashboard at the address it printed",
                    status_code=403))
        start = time.perf_counter()
        response = await call_next(request)
        # the server's own time for this response (the benchmark reads it)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.1f}"
        if set_cookie and token is not None:
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return _secure(response)

    def _secure(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # ------------------------------------------------------------------ helpers
    def view(r: int) -> RunView:
        if not 0 <= r < len(views):
            raise HTTPException(404, f"no run {r}; runs are numbered 0 to {len(views) - 1}")
        v = views[r]
        v.refresh(max_age=poll_interval / 2)
        return v

    def render(name: str, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**ctx))

    def phref(r: int) -> Callable[[int], str]:
        return lambda pid: f"/runs/{int(r)}/programs/{int(pid)}"

    def capped(text: str) -> tuple[str, int]:
        return (text[:_SHOW_CHARS], max(len(text) - _SHOW_CHARS, 0))

    def highlighted(code: str, filename: str) -> str:
        try:
            lexer = get_lexer_for_filename(filename, stripnl=False)
        except ClassNotFound:
            lexer = TextLexer(stripnl=False)
        return highlight(code, lexer, formatter)  # Pygments escapes the code

    def charts_for(r: int, v: RunView) -> dict[str, Any]:
        ctx: dict[str, Any] = {"r": r, "s": v.summary()}
        ctx["score_chart"] = charts.score_chart(v.scores(), href=phref(r))
        tl = v.timeline()
        ctx["timeline"] = tl
        if tl["buckets"]:
            ctx["rate_chart"] = charts.bars_chart(tl["buckets"], tl["span"],
                                                  x_label="minutes since the run started")
            mid = [((b["start"] + b["end"]) / 120, b["total_tokens"]) for b in tl["buckets"]]
            cost = [((b["start"] + b["end"]) / 120, b["total_cost"]) for b in tl["buckets"]]
            ctx["tokens_chart"] = charts.lines_chart([("tokens (prompt + completion)", mid)],
                                                     x_label="minutes", y_label="tokens")
            ctx["cost_chart"] = charts.lines_chart([("cost USD", cost)], x_label="minutes",
                                                   y_label="USD")
        else:
            ctx["rate_chart"] = ctx["tokens_chart"] = ctx["cost_chart"] = None
        arms = v.arms()
        ctx["arms"] = arms
        ctx["arms_chart"] = charts.arms_chart(arms) if arms else None
        return ctx

    def grid_ctx(r: int, v: RunView) -> dict[str, Any]:
        g = v.grid()
        allbest = [c["best"] for isl in g["islands"] for c in isl["cells"]]
        lo, hi = (min(allbest), max(allbest)) if allbest else (0.0, 1.0)
        maps = [{"island": isl["island"], "programs": isl["programs"],
                 "cells": len(isl["cells"]),
                 "svg": charts.heatmap(isl, lo=lo, hi=hi, minimize=v.minimize, href=phref(r))}
                for isl in g["islands"]]
        return {"r": r, "s": v.summary(), "grid": g, "maps": maps, "lo": lo, "hi": hi}

    def front_ctx(r: int, v: RunView, sort: int, page: int) -> dict[str, Any]:
        par = v.pareto()
        pts = v.front_points()
        if par is None or pts is None:
            raise HTTPException(404, f"run {r} has one objective (no objective.metrics): it "
                                     "keeps no Pareto front")
        try:
            pg = v.front_page(sort=sort, page=page)
        except StorageError as e:
            raise HTTPException(400, str(e)) from e
        hv = [(float(n), float(x)) for n, x in par["history"]]
        hv_chart = (charts.steps_chart([("hypervolume", hv, float(max(par["done"], 1)))],
                                       x_label="programs evaluated (commit order)",
                                       y_label="hypervolume") if hv else None)
        return {"r": r, "s": v.summary(), "par": par, "pts": pts, "pg": pg,
                "front_chart": charts.pareto_chart(pts, href=phref(r)), "hv_chart": hv_chart}

    def list_ctx(r: int, v: RunView, status: str | None, island: int | None, sort: str,
                 page: int) -> dict[str, Any]:
        try:
            pg = v.page(status=status or None, island=island, sort=sort, page=page)
        except StorageError as e:
            raise HTTPException(400, str(e)) from e
        return {"r": r, "s": v.summary(), "pg": pg, "num_islands": v.num_islands}

    def program_ctx(r: int, v: RunView, pid: int) -> dict[str, Any]:
        try:
            p = v.program(pid)
        except StorageError as e:
            raise HTTPException(404, str(e)) from e
        parent = None
        if p.parent_ids:
            try:
                parent = v.program(p.parent_ids[0])
            except StorageError:
                parent = None
        files = _files(p.code)  # a program of several files: each file on its own
        code_files = []
        for name, text in (files or {v.language: p.code}).items():
            shown, more = capped(text)
            code_files.append({"path": name if files else "", "more": more,
                               "html": highlighted(shown, name)})
        diff_html, diff_more = "", 0
        if parent is not None:
            old = _files(parent.code)
            if files is not None and old is not None:
                diff = tree_diff(old, files, f"#{parent.id}", f"#{p.id}")
            else:
                diff = "".join(difflib.unified_diff(parent.code.splitlines(True),
                                                    p.code.splitlines(True),
                                                    f"program #{parent.id}", f"program #{p.id}"))
            diff, diff_more = capped(diff or "(identical)\n")
            diff_html = highlight(diff, DiffLexer(stripnl=False), plain)
        ex = v.exchange(pid)
        messages = []
        if ex:
            for m in ex.get("messages") or []:
                if isinstance(m, dict):
                    text, more = capped(str(m.get("content", "")))
                    messages.append({"role": str(m.get("role", "?")), "content": text,
                                     "more": more})
        reply = capped(str(ex.get("reply"))) if ex and ex.get("reply") is not None else None
        exchange = None if ex is None else {  # its shape is not trusted either: only strings
            "model": str(ex.get("model") or "-"), "attempts": str(ex.get("attempts") or 0),
            "outcome": str(ex.get("outcome") or ""),
            "tried": [str(t) for t in ex.get("tried") or [] if t is not None][:20]}
        artifacts = [(str(k), *capped(str(val))) for k, val in p.artifacts.items()]
        lineage = v.lineage(pid)
        children = v.children(pid)
        return {"r": r, "s": v.summary(), "p": p, "parent": parent,
                "choice": parent_choice(p), "code_files": code_files,
                "diff_html": diff_html, "diff_more": diff_more, "exchange": exchange,
                "messages": messages, "reply": reply, "artifacts": artifacts,
                "lineage": lineage, "children": children,
                "lineage_svg": _lineage_svg(r, lineage, children)}

    def compare_ctx(a: int, b: int) -> dict[str, Any]:
        va, vb = view(a), view(b)
        series = []
        for v in (va, vb):
            sc = v.scores()
            pts = [(rec["x"], rec["score"]) for rec in sc["best"]]
            series.append((v.name, pts, float(sc["x_max"])))
        refs = [(f"best known ({va.name})", x) for x in [va.best_known()] if x is not None]
        chart = charts.steps_chart(series, x_label="programs evaluated (commit order)",
                                   y_label="best score so far", refs=refs)
        return {"a": a, "b": b, "va": va.summary(), "vb": vb.summary(), "cmp_chart": chart,
                "runs": [(i, w.name) for i, w in enumerate(views)]}

    # ------------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        rows = [(i, view(i).summary()) for i in range(len(views))]
        return render("index.html", rows=rows, runs=[(i, v.name) for i, v in enumerate(views)])

    @app.get("/runs/{r}", response_class=HTMLResponse)
    def overview(r: int) -> HTMLResponse:
        return render("overview.html", **charts_for(r, view(r)))

    @app.get("/runs/{r}/grid", response_class=HTMLResponse)
    def grid_page(r: int) -> HTMLResponse:
        return render("grid.html", **grid_ctx(r, view(r)))

    @app.get("/runs/{r}/front", response_class=HTMLResponse)
    def front_page(r: int, sort: int = 0, page: int = 1) -> HTMLResponse:
        return render("front.html", **front_ctx(r, view(r), sort, page))

    @app.get("/runs/{r}/programs", response_class=HTMLResponse)
    def programs_page(r: int, status: str | None = None, island: str | None = None,
                      sort: str = "score", page: int = 1) -> HTMLResponse:
        return render("programs.html",
                      **list_ctx(r, view(r), status, _island(island), sort, page))

    @app.get("/runs/{r}/programs/{pid}", response_class=HTMLResponse)
    def program_page(r: int, pid: int) -> HTMLResponse:
        return render("program.html", **program_ctx(r, view(r), pid))

    @app.get("/compare", response_class=HTMLResponse)
    def compare_page(a: int = 0, b: int = 1) -> HTMLResponse:
        return render("compare.html", **compare_ctx(a, b))

    _PARTS = {"summary": "part_summary.html", "charts": "part_charts.html",
              "grid": "part_grid.html", "programs": "part_programs.html",
              "lineage": "part_lineage.html", "compare": "part_compare.html",
              "front": "part_front.html"}

    @app.get("/runs/{r}/part/{name}", response_class=HTMLResponse)
    def part(r: int, name: str, request: Request) -> HTMLResponse:
        v = view(r)
        q = request.query_params
        if name == "summary":
            ctx: dict[str, Any] = {"r": r, "s": v.summary()}
        elif name == "charts":
            ctx = charts_for(r, v)
        elif name == "grid":
            ctx = grid_ctx(r, v)
        elif name == "programs":
            ctx = list_ctx(r, v, q.get("status"), _island(q.get("island")),
                           q.get("sort", "score"), _int(q.get("page"), 1))
        elif name == "lineage":
            ctx = program_ctx(r, v, _int(q.get("id"), 0))
        elif name == "compare":
            ctx = compare_ctx(r, _int(q.get("b"), 1))
        elif name == "front":
            ctx = front_ctx(r, v, _int(q.get("sort"), 0), _int(q.get("page"), 1))
        else:
            raise HTTPException(404, f"no part {name!r}")
        return render(_PARTS[name], **ctx)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/assets/code.css")
    def code_style() -> Response:
        return Response(code_css, media_type="text/css")

    @app.get("/runs/{r}/events")
    async def events(r: int, request: Request) -> StreamingResponse:
        v = view(r)

        async def stream() -> AsyncIterator[str]:
            last = None
            idle = 0.0
            yield "retry: 2000\n\n"
            while not stopping.is_set():
                await run_in_threadpool(v.refresh)
                s = v.summary()
                if s["version"] != last:
                    last = s["version"]
                    idle = 0.0
                    data = {"version": s["version"], "done": s["done"], "pending": s["pending"],
                            "best_score": s["best_score"], "best_id": s["best_id"]}
                    yield f"event: update\ndata: {json.dumps(data)}\n\n"
                elif idle >= 15:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(poll_interval)
                idle += poll_interval

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # ------------------------------------------------------------------ JSON API
    def j(value: Any) -> JSONResponse:
        return JSONResponse(_finite(value))

    @app.get("/api/runs")
    def api_runs() -> JSONResponse:
        return j([{"run": i, **view(i).summary()} for i in range(len(views))])

    @app.get("/api/runs/{r}/summary")
    def api_summary(r: int) -> JSONResponse:
        return j(view(r).summary())

    @app.get("/api/runs/{r}/scores")
    def api_scores(r: int) -> JSONResponse:
        return j(view(r).scores())

    @app.get("/api/runs/{r}/timeline")
    def api_timeline(r: int) -> JSONResponse:
        return j(view(r).timeline())

    @app.get("/api/runs/{r}/arms")
    def api_arms(r: int) -> JSONResponse:
        return j(view(r).arms())

    @app.get("/api/runs/{r}/grid")
    def api_grid(r: int) -> JSONResponse:
        return j(view(r).grid())

    def pareto_of(r: int) -> RunView:
        v = view(r)
        if not v.objectives:
            raise HTTPException(404, f"run {r} has one objective (no objective.metrics): it "
                                     "keeps no Pareto front")
        return v

    @app.get("/api/runs/{r}/pareto")
    def api_pareto(r: int) -> JSONResponse:
        return j(pareto_of(r).pareto())

    @app.get("/api/runs/{r}/pareto/front")
    def api_front(r: int, sort: int = 0, page: int = 1, per_page: int = 50) -> JSONResponse:
        try:
            return j(pareto_of(r).front_page(sort=sort, page=page, per_page=per_page))
        except StorageError as e:
            raise HTTPException(400, str(e)) from e

    @app.get("/api/runs/{r}/pareto/points")
    def api_front_points(r: int) -> JSONResponse:
        return j(pareto_of(r).front_points())

    @app.get("/api/runs/{r}/programs")
    def api_programs(r: int, status: str | None = None, island: int | None = None,
                     sort: str = "score", page: int = 1, per_page: int = 50) -> JSONResponse:
        try:
            return j(view(r).page(status=status, island=island, sort=sort, page=page,
                                  per_page=per_page))
        except StorageError as e:
            raise HTTPException(400, str(e)) from e

    @app.get("/api/runs/{r}/programs/{pid}")
    def api_program(r: int, pid: int) -> JSONResponse:
        v = view(r)
        try:
            p = v.program(pid)
        except StorageError as e:
            raise HTTPException(404, str(e)) from e
        m = p.mutation
        return j({"id": p.id, "status": p.status.value, "score": p.score, "reason": p.reason,
                  "code": p.code, "parent_ids": list(p.parent_ids), "island": p.island,
                  "generation": p.generation, "metrics": p.metrics, "features": p.features,
                  "artifacts": p.artifacts, "mutation": m.to_dict(), "created_at": p.created_at,
                  "evaluated_at": p.evaluated_at, "eval_time": p.eval_time,
                  "done_seq": p.done_seq, "exchange": v.exchange(pid)})

    @app.get("/api/runs/{r}/programs/{pid}/lineage")
    def api_lineage(r: int, pid: int, limit: int = 200) -> JSONResponse:
        try:
            return j(view(r).lineage(pid, limit=min(max(limit, 2), 1000)))
        except StorageError as e:
            raise HTTPException(404, str(e)) from e

    @app.get("/api/runs/{r}/programs/{pid}/children")
    def api_children(r: int, pid: int) -> JSONResponse:
        return j(view(r).children(pid))

    @app.get("/api/compare")
    def api_compare(a: int = 0, b: int = 1) -> JSONResponse:
        out = []
        for i in (a, b):
            v = view(i)
            sc = v.scores()
            out.append({"run": i, "name": v.name, "x_max": sc["x_max"], "best": sc["best"],
                        "summary": v.summary()})
        return j(out)

    return app


def _files(code: str) -> dict[str, str] | None:
    """The files of a program of several files (None: one file, or a malformed tree)."""
    if not is_packed(code):
        return None
    try:
        return unpack(code)
    except ProgramFilesError:
        return None


def _island(text: str | None) -> int | None:
    """An island filter from a query string: empty means all islands."""
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        from fastapi import HTTPException

        raise HTTPException(400, f"island must be a number, got {text[:40]!r}") from None


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _finite(value: Any) -> Any:
    """JSON-safe: non-finite floats become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(x) for x in value]
    return value


def _lineage_svg(r: int, lineage: dict[str, Any], children: dict[str, Any]) -> dict[str, Any]:
    """The path to the initial program as a column of nodes (root at the top), the program's
    children fanned out below it; every node links to its program."""
    path = list(reversed(lineage["path"]))  # root first
    kids = children["items"][:12]
    step = 34
    w = 420
    nodes, edges = [], []
    for k, n in enumerate(path):
        y = 18 + k * step
        nodes.append({"x": 40, "y": y, "id": n["id"], "status": n["status"],
                      "label": f"#{n['id']}  {charts.fmt(n['score'])}  gen {n['generation']}",
                      "href": f"/runs/{int(r)}/programs/{int(n['id'])}",
                      "current": k == len(path) - 1})
        if k:
            gap = lineage["truncated"] if k == 1 and lineage["truncated"] else 0
            edges.append({"x1": 40, "y1": y - step + 8, "x2": 40, "y2": y - 8, "gap": gap})
    base = 18 + (len(path) - 1) * step
    for k, c in enumerate(kids):
        x = 120 + (k % 3) * 100
        y = base + step * (1 + k // 3)
        nodes.append({"x": x, "y": y, "id": c["id"], "status": c["status"],
                      "label": f"#{c['id']} {charts.fmt(c['score'])}",
                      "href": f"/runs/{int(r)}/programs/{int(c['id'])}", "current": False})
        edges.append({"x1": 40, "y1": base + 8, "x2": x, "y2": y - 8, "gap": 0})
    h = base + step * (1 + (len(kids) + 2) // 3) + 10
    return {"w": w, "h": h, "nodes": nodes, "edges": edges}
