"""What the dashboard shows of one run, aggregated server-side from a light in-memory index.

:class:`RunView` keeps a columnar index of the run's terminal programs (numpy arrays of ids,
scores, islands, times, tokens, cost, arm, feature values: no code, no text), extended
incrementally from the storage as the run commits more; every chart is an aggregate of it
(downsampled to what a chart can show), and every listing is a page. Text (code, reasons,
metrics, prompts) is read per program from the Storage, only for the page that shows it.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evoforge.dashboard.source import Source
from evoforge.errors import StorageError
from evoforge.program import Program, Status
from evoforge.storages.base import Storage

STATUSES: tuple[str, ...] = tuple(s.value for s in Status if s.terminal)
_STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}
_OK = _STATUS_CODE["ok"]
_FETCH = 20_000  # rows per index refresh query
_FENCE = 1.5  # the selector's Tukey fences (evoforge.selectors.islands)
_BIG = 2.0**1020


def _f(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return min(max(v, -_BIG), _BIG) if math.isfinite(v) else 0.0


class _Index:
    """Columns of the terminal programs in commit order; grown by :meth:`extend`."""

    def __init__(self, features: list[str]) -> None:
        self.features = features
        self.arm_names: list[str] = []
        self._arm_code: dict[str, int] = {}
        self.id = np.zeros(0, np.int64)
        self.seq = np.zeros(0, np.int64)
        self.status = np.zeros(0, np.int8)
        self.island = np.zeros(0, np.int32)
        self.gen = np.zeros(0, np.int32)
        self.score = np.zeros(0, np.float64)  # NaN: no score
        self.parent = np.zeros(0, np.int64)  # first parent, -1: none
        self.created = np.zeros(0, np.float64)
        self.evaluated = np.zeros(0, np.float64)
        self.ptok = np.zeros(0, np.int64)
        self.ctok = np.zeros(0, np.int64)
        self.cost = np.zeros(0, np.float64)
        self.arm = np.zeros(0, np.int32)  # index into arm_names, -1: none
        self.feat = np.zeros((0, len(features)), np.float64)
        self.row_of: dict[int, int] = {}
        self.last_seq = -1
        self._sorted: tuple[int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.id.shape[0])

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The row of each id (-1: not in the index), vectorised."""
        if self._sorted is None or self._sorted[0] != len(self):
            order = np.argsort(self.id, kind="stable")
            self._sorted = (len(self), order, self.id[order])
        _, order, sorted_ids = self._sorted
        if not len(self):
            return np.full(ids.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(sorted_ids, ids), len(self) - 1)
        return np.where(sorted_ids[pos] == ids, order[pos], -1)

    def _arm(self, name: Any) -> int:
        if not isinstance(name, str) or not name:
            return -1
        code = self._arm_code.get(name)
        if code is None:
            code = self._arm_code[name] = len(self.arm_names)
            self.arm_names.append(name)
        return code

    def extend(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        n0 = len(self)
        cols = list(zip(*rows, strict=True))
        parents = [-1 if p is None else int(p) for p in cols[6]]
        nf = len(self.features)
        feats = np.zeros((len(rows), nf), np.float64)
        for k in range(nf):
            feats[:, k] = [_f(v) if v is not None else 0.0 for v in cols[13 + k]]

        def cat(old: np.ndarray, new: Any, dtype: Any) -> np.ndarray:
            return np.concatenate([old, np.asarray(new, dtype=dtype)])

        self.id = cat(self.id, cols[0], np.int64)
        self.seq = cat(self.seq, cols[1], np.int64)
        self.status = cat(self.status, [_STATUS_CODE.get(s, _STATUS_CODE["crashed"])
                                        for s in cols[2]], np.int8)
        self.island = cat(self.island, cols[3], np.int32)
        self.gen = cat(self.gen, cols[4], np.int32)
        self.score = cat(self.score, [math.nan if s is None else float(s) for s in cols[5]],
                         np.float64)
        self.parent = cat(self.parent, parents, np.int64)
        self.created = cat(self.created, [c or 0.0 for c in cols[7]], np.float64)
        self.evaluated = cat(self.evaluated, [e if e is not None else (c or 0.0)
                                              for e, c in zip(cols[8], cols[7], strict=True)],
                             np.float64)
        self.ptok = cat(self.ptok, [t or 0 for t in cols[9]], np.int64)
        self.ctok = cat(self.ctok, [t or 0 for t in cols[10]], np.int64)
        self.cost = cat(self.cost, [c or 0.0 for c in cols[11]], np.float64)
        self.arm = cat(self.arm, [self._arm(a) for a in cols[12]], np.int32)
        self.feat = np.concatenate([self.feat, feats])
        self.row_of.update(zip(cols[0], range(n0, n0 + len(rows)), strict=True))
        self.last_seq = int(cols[1][-1])


@dataclass(frozen=True)
class Ref:
    """A labelled reference line on the score chart."""

    label: str
    value: float


class RunView:
    """One run as the dashboard sees it: a read-only Storage, a :class:`Source`, its config
    and problem metadata; every method returns plain values for the templates and the API."""

    def __init__(self, name: str, storage: Storage, source: Source, config: Any, *,
                 problem_meta: dict[str, Any] | None = None, language: str = "python") -> None:
        self.name = name
        self.storage = storage
        self.source = source
        self.config = config
        self.minimize = bool(config.minimize)
        self.sign = -1.0 if self.minimize else 1.0
        self.meta = problem_meta or {}
        self.language = language
        sel = config.selector
        self.grid_features = ([f for f in sel.features] if sel.name == "islands" else [])
        self.num_islands = int(sel.num_islands) if sel.name == "islands" else 1
        self._index = _Index([f.name for f in self.grid_features])
        # the index grows under it; every aggregate and listing reads under it (one request's
        # view of the arrays is consistent while a refresh extends them)
        self._lock = threading.RLock()
        self._pending = 0
        self._head: tuple[int, int, int] = (-1, -1, 0)
        self._checked = 0.0
        self._cache: dict[str, tuple[int, Any]] = {}

    # ------------------------------------------------------------------ freshness
    def refresh(self, *, max_age: float = 0.0) -> tuple[int, int, int]:
        """Bring the index up to date (at most every ``max_age`` seconds); the new head."""
        with self._lock:
            now = time.monotonic()
            if max_age and now - self._checked < max_age:
                return self._head
            self._checked = now
            head = self.source.head()
            idx = self._index
            while head[0] > idx.last_seq:
                rows = self.source.light_after(idx.last_seq, _FETCH, idx.features)
                if not rows:
                    break
                idx.extend(rows)
            self._head = head
            self._pending = head[2]
            return head

    @property
    def version(self) -> int:
        """Changes whenever a result is committed or a proposal stored."""
        seq, top, pending = self._head
        return (seq + 1) * 1_000_003 + top * 7 + pending

    def forget(self) -> None:
        """Drop the cached aggregates (the next page computes them afresh: benchmarks)."""
        self._cache.clear()

    def _cached(self, key: str, fn: Any) -> Any:
        with self._lock:
            v = self.version
            hit = self._cache.get(key)
            if hit is not None and hit[0] == v:
                return hit[1]
            value = fn()
            self._cache[key] = (v, value)
            return value

    # ------------------------------------------------------------------ summary
    def _fit(self) -> np.ndarray:
        idx = self._index
        ok = (idx.status == _OK) & ~np.isnan(idx.score)
        return np.where(ok, self.sign * idx.score, -np.inf)

    def best(self) -> tuple[int, float] | None:
        fit = self._fit()
        if not len(fit) or not np.isfinite(fit).any():
            return None
        # ties: the first committed (as `evoforge best`)
        r = int(np.argmax(fit))
        return int(self._index.id[r]), float(self._index.score[r])

    def initial_score(self) -> float | None:
        r = self._index.row_of.get(0)
        if r is None or np.isnan(self._index.score[r]):
            return None
        return float(self._index.score[r])

    def best_known(self) -> float | None:
        v = self.meta.get("best_known")
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) \
            and math.isfinite(v) else None

    def summary(self) -> dict[str, Any]:
        return self._cached("summary", self._summary)

    def _summary(self) -> dict[str, Any]:
        idx = self._index
        counts = {s: int(np.count_nonzero(idx.status == i)) for i, s in enumerate(STATUSES)}
        counts["pending"] = self._pending
        done = len(idx)
        best = self.best()
        t0 = float(idx.created.min()) if done else None
        t1 = float(idx.evaluated.max()) if done else None
        elapsed = (t1 - t0) if t0 is not None and t1 is not None else 0.0
        recent = 0.0
        if done and t1 is not None:
            window = min(300.0, max(elapsed, 1e-9))
            recent = float(np.count_nonzero(idx.evaluated >= t1 - window)) / window * 60
        return {
            "name": self.name,
            "title": str(self.meta.get("title") or ""),
            "direction": "minimize" if self.minimize else "maximize",
            "counts": counts,
            "done": done,
            "pending": self._pending,
            "best_id": best[0] if best else None,
            "best_score": best[1] if best else None,
            "initial_score": self.initial_score(),
            "best_known": self.best_known(),
            "prompt_tokens": int(idx.ptok.sum()),
            "completion_tokens": int(idx.ctok.sum()),
            "cost": float(idx.cost.sum()),
            "elapsed": elapsed,
            "per_minute": done / elapsed * 60 if elapsed > 0 else 0.0,
            "recent_per_minute": recent,
            "started_at": t0,
            "last_result_at": t1,
            "version": self.version,
        }

    # ------------------------------------------------------------------ score over time
    def scores(self, *, width: int = 180, height: int = 75, line_points: int = 400
               ) -> dict[str, Any]:
        """Every scored program as a point, downsampled to a ``width`` x ``height`` raster of
        (x: commit order, y: score) cells (one point per occupied cell and status, with how
        many programs it stands for); unscored programs as per-column counts by status; the
        best-so-far line of the run and of each island, as steps at their records."""
        return self._cached(f"scores:{width}:{height}:{line_points}",
                            lambda: self._scores(width, height, line_points))

    def _scores(self, width: int, height: int, line_points: int) -> dict[str, Any]:
        idx = self._index
        n = len(idx)
        refs = [Ref("initial", v) for v in [self.initial_score()] if v is not None]
        refs += [Ref("best known", v) for v in [self.best_known()] if v is not None]
        xmax = int(idx.seq.max()) if n else 0
        scored = ~np.isnan(idx.score)
        ys = idx.score[scored]
        lo = float(ys.min()) if ys.size else 0.0
        hi = float(ys.max()) if ys.size else 1.0
        for r in refs:
            lo, hi = min(lo, r.value), max(hi, r.value)
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        xs_all = idx.seq.astype(np.float64)
        bx = np.minimum((xs_all / max(xmax, 1) * (width - 1)).astype(np.int64), width - 1)
        points = []
        if ys.size:
            by = np.minimum(((ys - lo) / (hi - lo) * (height - 1)).astype(np.int64), height - 1)
            st = idx.status[scored].astype(np.int64)
            key = (st * width + bx[scored]) * height + by
            uniq, first, count = np.unique(key, return_index=True, return_counts=True)
            ids = idx.id[scored][first]
            st_of, rest = np.divmod(uniq, width * height)
            cx_of, cy_of = np.divmod(rest, height)
            points = [{"status": STATUSES[s_], "x": x_, "y": y_, "count": c_, "id": i_}
                      for s_, x_, y_, c_, i_ in zip(st_of.tolist(), cx_of.tolist(),
                                                    cy_of.tolist(), count.tolist(),
                                                    ids.tolist(), strict=True)]
        unscored = []
        if n and (~scored).any():
            st = idx.status[~scored].astype(np.int64)
            key = st * width + bx[~scored]
            uniq, count = np.unique(key, return_counts=True)
            for k, c in zip(uniq.tolist(), count.tolist(), strict=True):
                s, cx = divmod(k, width)
                unscored.append({"status": STATUSES[s], "x": cx, "count": c})
        fit = self._fit()
        lines = {"all": self._records(np.ones(n, bool), fit, line_points)}
        islands = sorted(set(idx.island.tolist())) if self.num_islands > 1 else []
        per_island = {int(i): self._records(idx.island == i, fit, line_points) for i in islands}
        return {"x_max": xmax, "y_min": lo, "y_max": hi, "width": width, "height": height,
                "points": points, "unscored": unscored, "best": lines["all"],
                "islands": per_island, "refs": [{"label": r.label, "value": r.value}
                                                for r in refs],
                "direction": "minimize" if self.minimize else "maximize"}

    def _records(self, mask: np.ndarray, fit: np.ndarray, keep: int) -> list[dict[str, Any]]:
        """The programs that improved the best so far among ``mask`` (at most ``keep``: the
        last record in each of ``keep`` equal spans of commit order)."""
        idx = self._index
        f = fit[mask]
        if not f.size or not np.isfinite(f).any():
            return []
        run = np.maximum.accumulate(f)
        prev = np.concatenate([[-np.inf], run[:-1]])
        rec = np.nonzero(f > prev)[0]
        seqs = idx.seq[mask][rec]
        if rec.size > keep:
            span = max(int(idx.seq.max()) + 1, 1) / keep
            slot = (seqs / span).astype(np.int64)
            last = np.nonzero(np.concatenate([slot[1:] != slot[:-1], [True]]))[0]
            rec, seqs = rec[last], seqs[last]
        ids = idx.id[mask][rec]
        scores = idx.score[mask][rec]
        return [{"x": int(x), "id": int(i), "score": float(s)}
                for x, i, s in zip(seqs.tolist(), ids.tolist(), scores.tolist(), strict=True)]

    # ------------------------------------------------------------------ over wall time
    def timeline(self, *, buckets: int = 60) -> dict[str, Any]:
        """Per equal span of wall time since the first proposal: programs by status, tokens
        and cost (and their running totals)."""
        return self._cached(f"timeline:{buckets}", lambda: self._timeline(buckets))

    def _timeline(self, buckets: int) -> dict[str, Any]:
        idx = self._index
        if not len(idx):
            return {"t0": None, "span": 0.0, "buckets": []}
        t0 = float(idx.created.min())
        t1 = float(idx.evaluated.max())
        span = max(t1 - t0, 1e-6)
        b = np.minimum(((idx.evaluated - t0) / span * buckets).astype(np.int64), buckets - 1)
        b = np.maximum(b, 0)
        out = []
        by_status = {s: np.bincount(b[idx.status == i], minlength=buckets)
                     for i, s in enumerate(STATUSES)}
        ptok = np.bincount(b, weights=idx.ptok.astype(np.float64), minlength=buckets)
        ctok = np.bincount(b, weights=idx.ctok.astype(np.float64), minlength=buckets)
        cost = np.bincount(b, weights=idx.cost, minlength=buckets)
        cum_tok = np.cumsum(ptok + ctok)
        cum_cost = np.cumsum(cost)
        width = span / buckets
        for k in range(buckets):
            counts = {s: int(by_status[s][k]) for s in STATUSES}
            total = sum(counts.values())
            out.append({"start": k * width, "end": (k + 1) * width, "counts": counts,
                        "per_minute": total / width * 60, "prompt_tokens": int(ptok[k]),
                        "completion_tokens": int(ctok[k]), "cost": float(cost[k]),
                        "total_tokens": int(cum_tok[k]), "total_cost": float(cum_cost[k])})
        return {"t0": t0, "span": span, "buckets": out}

    # ------------------------------------------------------------------ bandit arms
    def arms(self, *, buckets: int = 40) -> dict[str, Any] | None:
        """The bandit's arm choices (None when no program records an arm): per arm pulls,
        children better than their parent, cost; and the choices per span of commit order."""
        return self._cached(f"arms:{buckets}", lambda: self._arms(buckets))

    def _arms(self, buckets: int) -> dict[str, Any] | None:
        idx = self._index
        if not idx.arm_names or not (idx.arm >= 0).any():
            return None
        fit = self._fit()
        prow = idx.rows_of(idx.parent)
        pfit = np.where(prow >= 0, fit[np.maximum(prow, 0)], -np.inf)
        better = np.isfinite(fit) & np.isfinite(pfit) & (fit > pfit)
        xmax = max(int(idx.seq.max()), 1)
        b = np.minimum((idx.seq / (xmax + 1) * buckets).astype(np.int64), buckets - 1)
        rows: list[dict[str, Any]] = []
        per_bucket = []
        for code, name in enumerate(idx.arm_names):
            m = idx.arm == code
            pulls = int(m.sum())
            rows.append({"arm": name, "pulls": pulls, "better": int(better[m].sum()),
                         "cost": float(idx.cost[m].sum())})
            per_bucket.append(np.bincount(b[m], minlength=buckets).tolist())
        ranked = sorted(range(len(rows)), key=lambda i: -rows[i]["pulls"])
        return {"arms": [rows[i] for i in ranked],
                "buckets": [{"arm": rows[i]["arm"], "counts": per_bucket[i]} for i in ranked],
                "n_buckets": buckets, "x_max": xmax}

    # ------------------------------------------------------------------ MAP-Elites
    def grid(self) -> dict[str, Any]:
        """Per island, the MAP-Elites grid of its ok programs (binned as the islands selector
        bins: a feature's fixed min/max, else the box-plot whiskers of the values) with the
        best score, the elite and the number of programs per cell."""
        return self._cached("grid", self._grid)

    def _grid(self) -> dict[str, Any]:
        idx = self._index
        feats = self.grid_features
        if not feats:
            return {"features": [], "islands": []}
        fit = self._fit()
        islands = []
        for isl in range(self.num_islands):
            m = (idx.island == isl) & np.isfinite(fit)
            if not m.any():
                islands.append({"island": isl, "axes": [], "cells": [], "programs": 0})
                continue
            vals = idx.feat[m]
            axes, bins = [], []
            for k, fc in enumerate(feats):
                v = vals[:, k]
                if fc.scale == "log":
                    v = np.log1p(np.maximum(v, 0.0))
                lo, hi = _axis_range(np.sort(v), fc)
                width = hi - lo
                frac = (v - lo) / width if width > 0 else np.zeros_like(v)
                bins.append(np.clip((frac * fc.bins).astype(np.int64), 0, fc.bins - 1))
                axes.append({"name": fc.name, "bins": fc.bins, "lo": lo, "hi": hi,
                             "scale": fc.scale})
            f = fit[m]
            ids = idx.id[m]
            sc = idx.score[m]
            if len(bins) == 1:
                key = bins[0]
            else:
                key = bins[0] * feats[1].bins + bins[1]
                for k in range(2, len(bins)):
                    key = key * feats[k].bins + bins[k]
            # per cell: the best (ties: the later committed), and the count
            order = np.lexsort((-np.arange(f.size), -f, key))
            ks = key[order]
            first = np.concatenate([[True], ks[1:] != ks[:-1]])
            starts = np.nonzero(first)[0]
            counts = np.diff(np.concatenate([starts, [ks.size]]))
            cells = []
            for s, c in zip(starts.tolist(), counts.tolist(), strict=True):
                r = int(order[s])
                coords = [int(b[r]) for b in bins]
                cells.append({"cell": coords, "best": float(sc[r]), "id": int(ids[r]),
                              "count": int(c)})
            islands.append({"island": isl, "axes": axes, "cells": cells, "programs": int(m.sum())})
        return {"features": [f.name for f in feats], "islands": islands,
                "direction": "minimize" if self.minimize else "maximize"}

    # ------------------------------------------------------------------ listings
    def page(self, *, status: str | None = None, island: int | None = None,
             sort: str = "score", page: int = 1, per_page: int = 50) -> dict[str, Any]:
        """One page of terminal programs (light rows: no code), filtered and sorted."""
        with self._lock:
            return self._page(status, island, sort, page, per_page)

    def _page(self, status: str | None, island: int | None, sort: str, page: int,
              per_page: int) -> dict[str, Any]:
        idx = self._index
        mask = np.ones(len(idx), bool)
        if status:
            if status not in _STATUS_CODE:
                raise StorageError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
            mask &= idx.status == _STATUS_CODE[status]
        if island is not None:
            mask &= idx.island == island
        rows = np.nonzero(mask)[0]
        if sort == "score":
            fit = self._fit()[rows]
            rows = rows[np.lexsort((idx.seq[rows], -fit))]
        elif sort == "recent":
            rows = rows[::-1]
        elif sort != "id":
            raise StorageError(f"unknown sort {sort!r}; one of score, recent, id")
        else:
            rows = rows[np.argsort(idx.id[rows], kind="stable")]
        total = int(rows.size)
        per_page = min(max(int(per_page), 1), 200)
        pages = max((total + per_page - 1) // per_page, 1)
        page = min(max(int(page), 1), pages)
        chosen = rows[(page - 1) * per_page: page * per_page]
        ids = [int(i) for i in idx.id[chosen].tolist()]
        by_id = {r[0]: r for r in self.source.listing(ids)}
        items = []
        for pid in ids:
            r = by_id.get(pid)
            if r is None:
                continue
            items.append(dict(zip(("id", "status", "score", "island", "generation", "reason",
                                   "mutator", "model", "edit_kind", "cost"), r, strict=True)))
        return {"total": total, "page": page, "pages": pages, "per_page": per_page,
                "sort": sort, "status": status, "island": island, "items": items}

    # ------------------------------------------------------------------ one program
    def program(self, program_id: int) -> Program:
        return self.storage.get(int(program_id))

    def exchange(self, program_id: int) -> dict[str, Any] | None:
        return self.storage.exchange(int(program_id))

    def node(self, program_id: int) -> dict[str, Any]:
        """A lineage node: id, status, score, generation (from the index, else the storage)."""
        idx = self._index
        r = idx.row_of.get(int(program_id))
        if r is not None:
            s = idx.score[r]
            return {"id": int(program_id), "status": STATUSES[int(idx.status[r])],
                    "score": None if np.isnan(s) else float(s), "generation": int(idx.gen[r]),
                    "parent": int(idx.parent[r]) if idx.parent[r] >= 0 else None}
        p = self.storage.get(int(program_id))
        return {"id": p.id, "status": p.status.value, "score": p.score,
                "generation": p.generation, "parent": p.parent_ids[0] if p.parent_ids else None}

    def lineage(self, program_id: int, *, limit: int = 200) -> dict[str, Any]:
        """The path from a program back to the initial program (first parents), the program
        first; at most ``limit`` nodes: the nearest ``limit - 1`` and the root
        (``truncated`` says how many were left out between them)."""
        with self._lock:
            return self._lineage(program_id, limit)

    def _lineage(self, program_id: int, limit: int) -> dict[str, Any]:
        chain = [self.node(program_id)]
        seen = {int(program_id)}
        while chain[-1]["parent"] is not None and chain[-1]["parent"] not in seen:
            seen.add(chain[-1]["parent"])  # a corrupt cycle stops the walk
            chain.append(self.node(chain[-1]["parent"]))
        truncated = max(len(chain) - limit, 0)
        if truncated:
            chain = chain[: limit - 1] + [chain[-1]]
        return {"path": chain, "truncated": truncated}

    def children(self, program_id: int, *, limit: int = 50) -> dict[str, Any]:
        """Evaluated programs whose first parent is this one (the first ``limit`` committed)."""
        with self._lock:
            idx = self._index
            rows = np.nonzero(idx.parent == int(program_id))[0]
            items = [self.node(int(i)) for i in idx.id[rows[:limit]].tolist()]
            return {"total": int(rows.size), "items": items}

    def close(self) -> None:
        self.source.close()
        self.storage.close()


def _axis_range(v: np.ndarray, fc: Any) -> tuple[float, float]:
    """The range the islands selector would bin sorted values ``v`` in (fixed ends kept)."""
    log = fc.scale == "log"

    def tr(x: float) -> float:
        return math.log1p(max(x, 0.0)) if log else x

    n = v.size
    q1, q3 = float(np.quantile(v, 0.25)), float(np.quantile(v, 0.75))
    iqr = q3 - q1
    lo = float(v[np.searchsorted(v, q1 - _FENCE * iqr, "left")]) if n else 0.0
    hi = float(v[np.searchsorted(v, q3 + _FENCE * iqr, "right") - 1]) if n else 1.0
    if not hi > lo:
        lo, hi = float(v[0]), float(v[-1])
    if fc.min is not None:
        lo = tr(fc.min)
    if fc.max is not None:
        hi = tr(fc.max)
    if not hi > lo:
        w = max(abs(lo), abs(hi), 1.0)
        if fc.min is not None and fc.max is None:
            hi = lo + w
        elif fc.max is not None and fc.min is None:
            lo = hi - w
        else:
            lo, hi = lo - w / 2, hi + w / 2
    return lo, hi


def open_run(ref: str | Path, *, name: str | None = None) -> RunView:
    """Open a run read-only for the dashboard (safe while the run writes it): a run directory
    or a ``postgresql://...#run=NAME`` reference."""
    from evoforge.api import open_existing
    from evoforge.dashboard.source import source_for
    from evoforge.problem import problem_meta
    from evoforge.run import is_storage_reference
    from evoforge.storages import redact

    config, storage = open_existing(ref, readonly=True)
    try:
        source = source_for(storage)
        meta: dict[str, Any] = {}
        ppath = storage.get_meta("problem_path")
        if isinstance(ppath, str) and Path(ppath).is_dir():
            try:
                meta = problem_meta(Path(ppath))
            except Exception:  # noqa: BLE001 - a broken problem.yaml only loses the references
                meta = {}
        files = storage.get_meta("problem_files")
        program_file = files[0] if isinstance(files, list) and files else "program.py"
    except BaseException:
        storage.close()
        raise
    if name is None:
        if is_storage_reference(ref):
            name = str(getattr(storage, "run", "") or redact(str(ref)))
        else:
            name = Path(ref).expanduser().name or str(ref)
    view = RunView(name, storage, source, config, problem_meta=meta,
                   language=str(program_file))
    view.refresh()
    return view
