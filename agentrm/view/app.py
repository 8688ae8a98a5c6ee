"""`agentrm view`: server-rendered pages over a read-only trace store (Starlette + Jinja2).

Pages: / (runs with summaries), /runs/{id} (summary, scorer coverage, histograms),
/trajectories (the filtered, paged list), /t/{id} (turns, scores, advantages, patch, tests,
gold), /compare?a=&b= (two runs on their shared tasks). Every query is bounded (see
agentrm.traces.views); every value is escaped by Jinja2's autoescape.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agentrm.errors import AgentrmError, InputError, NotFoundError
from agentrm.traces import views
from agentrm.types import ExitStatus
from agentrm.view import render

log = logging.getLogger("agentrm.view")
HERE = Path(__file__).parent
PAGE_SIZES = (25, 50, 100, 200)
# Served on loopback only; checking the Host header also stops a web page that rebinds its own
# domain name to 127.0.0.1 from reading the store through the visitor's browser.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters.update(fmt=render.fmt, pct=render.pct, when=render.when, seconds=render.seconds,
                       clip=render.clip, text=render.content_text, args=render.arguments_text)
    env.globals.update(statuses=[s.value for s in ExitStatus], diff_lines=render.diff_lines,
                       bars=render.histogram_bars)
    return env


def _float(params, name: str) -> float | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise InputError(f"{name} must be a number, not {raw!r}") from None


def _int(params, name: str, default: int, lo: int = 0, hi: int | None = None) -> int:
    raw = (params.get(name) or "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise InputError(f"{name} must be a whole number, not {raw!r}") from None
    return max(lo, value if hi is None else min(value, hi))


@functools.lru_cache(maxsize=1)
def _bundled_gold() -> dict[str, str]:
    try:
        from agentrm.evals.swebench.dataset import load_instances

        return {i.instance_id: i.patch for i in load_instances("bundled")}
    except Exception:  # noqa: BLE001 - the bundled dataset is optional for the viewer
        log.debug("no bundled SWE-bench instances", exc_info=True)
        return {}


class Viewer:
    """The pages; `store` is opened read-only by the caller and closed by it."""

    def __init__(self, store: Any):
        self.store = store
        self.env = environment()

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(db=self.store.url, **context)
        return HTMLResponse(html, status_code=status)

    def runs(self, request: Request) -> HTMLResponse:
        return self.page("runs.html", runs=views.run_summaries(self.store))

    def run(self, request: Request) -> HTMLResponse:
        run_id = request.path_params["run_id"]
        found = views.run_summaries(self.store, run_id)
        if not found:
            raise NotFoundError(f"unknown run {run_id!r}")
        others = [r["id"] for r in self.store.list_runs() if r["id"] != run_id]
        dist = views.run_distributions(self.store, run_id)
        return self.page("run.html", run=found[0], others=others, coverage=dist["coverage"],
                         histograms=dist["histograms"], sampled=dist["sampled"])

    def trajectories(self, request: Request) -> HTMLResponse:
        q = request.query_params
        filters = {k: (q.get(k) or "").strip() or None for k in ("run", "task", "group", "status", "scorer")}
        limit = _int(q, "limit", 50, 1, PAGE_SIZES[-1])
        lo, hi = _float(q, "min"), _float(q, "max")
        ids = {"run_id": filters["run"], "task_id": filters["task"], "group_id": filters["group"],
               "exit_status": filters["status"]}
        got = views.trajectory_page(self.store, **ids, scorer=filters["scorer"], min_score=lo,
                                    max_score=hi, after=_int(q, "after", 0), limit=limit)
        counted = filters["scorer"] is None and lo is None and hi is None
        total = views.count_trajectories(self.store, **ids) if counted else None
        keep = {k: v for k, v in q.items() if k != "after" and v}
        return self.page("list.html", rows=got["rows"], next=got["next"], total=total, f=filters,
                         searched_to=got["searched_to"], cap=10_000,
                         min=q.get("min", ""), max=q.get("max", ""), limit=limit, keep=keep,
                         first_page=not q.get("after"), sizes=PAGE_SIZES,
                         run_ids=[r["id"] for r in self.store.list_runs()])

    def trajectory(self, request: Request) -> HTMLResponse:
        traj = self.store.get_trajectory(request.path_params["traj_id"])
        scores = self.store.get_scores([traj.id])
        turn_scores, turn_adv, traj_scores = render.by_turn(scores, self.store.get_advantages([traj.id]))
        patch = traj.metadata.get("model_patch") or traj.metadata.get("submission")
        swebench = "swebench" in traj.metadata or "model_patch" in traj.metadata
        gold = self._gold(traj.task_id) if swebench else None
        return self.page("trajectory.html", t=traj, turn_scores=turn_scores, turn_adv=turn_adv,
                         traj_scores=traj_scores, patch=patch if isinstance(patch, str) else None,
                         gold=gold, tests=render.tests_verdict(traj_scores), swebench=swebench,
                         nav=views.neighbours(self.store, traj.id))

    def _gold(self, task_id: str) -> str | None:
        try:
            meta = self.store.get_task(task_id).metadata or {}
            if isinstance(meta.get("patch"), str):
                return meta["patch"]
        except NotFoundError:
            pass
        found = render.gold_from_metadata(views.same_task_metadata(self.store, task_id))
        return found or _bundled_gold().get(task_id)

    def compare(self, request: Request) -> HTMLResponse:
        q = request.query_params
        a, b = (q.get("a") or "").strip(), (q.get("b") or "").strip()
        run_ids = [r["id"] for r in self.store.list_runs()]
        for name in (a, b):
            if name and name not in run_ids:
                raise NotFoundError(f"unknown run {name!r}")
        offset = _int(q, "offset", 0)
        result = views.compare_runs(self.store, a, b, offset=offset, limit=100) if a and b else None
        summaries = {r["id"]: r for r in views.run_summaries(self.store)} if result else {}
        return self.page("compare.html", a=a, b=b, result=result, run_ids=run_ids, offset=offset,
                         sa=summaries.get(a), sb=summaries.get(b))


def create_app(store: Any, allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS) -> Starlette:
    viewer = Viewer(store)

    def guarded(handler):
        def endpoint(request: Request) -> HTMLResponse:
            try:
                return handler(request)
            except NotFoundError as err:
                return viewer.page("error.html", status=404, message=str(err))
            except AgentrmError as err:
                return viewer.page("error.html", status=400, message=str(err))
        return endpoint

    routes = [
        Route("/", guarded(viewer.runs)),
        Route("/runs/{run_id:path}", guarded(viewer.run)),
        Route("/trajectories", guarded(viewer.trajectories)),
        Route("/t/{traj_id:path}", guarded(viewer.trajectory)),
        Route("/compare", guarded(viewer.compare)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[
        Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))])
    app.state.viewer = viewer
    return app
