"""Pages from views: Jinja2 templates with autoescape always on, Pygments for the diff, CSS and
JavaScript inlined and pinned by hash in a Content-Security-Policy that allows nothing else (no
network, no other script, no inline style attribute)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer

from cto_harness import __version__
from cto_harness.fsutil import atomic_write_text
from cto_harness.inert import inert
from cto_harness.viewer.compare import RunComparison, SuiteComparison
from cto_harness.viewer.runview import RunView
from cto_harness.viewer.suiteview import SuiteView
from cto_harness.viewer.timeline import Timeline

STATUSES = ("pass", "fail", "blocked", "error", "unverified", "missing")
_GANTT_ROWS = 400
_FORMATTER = HtmlFormatter(cssclass="diff")


def _asset(name: str) -> str:
    return resources.files("cto_harness.viewer").joinpath("templates", name).read_text("utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _tojson_text(value: Any) -> str:
    # Plain text (escaped by autoescape like any other string), unlike Jinja's own `tojson`.
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def environment() -> Environment:
    """The one template environment. Autoescape is on for every template, whatever its name."""
    env = Environment(loader=PackageLoader("cto_harness.viewer", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson_text"] = _tojson_text
    style = _asset("style.css") + "\n" + _FORMATTER.get_style_defs(".diff")
    script = _asset("script.js")
    env.globals.update(
        style=Markup(style), script=Markup(script), version=__version__,
        csp=(f"default-src 'none'; style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
             "img-src data:; base-uri 'none'; form-action 'none'"),
        statuses=STATUSES,
    )
    return env


class Links:
    """Hrefs from one page to bundle files and to other pages.

    Static pages link with relative paths (they open from disk); served pages link to bundle
    files through the server's mounts (`/files/<mount>/<path>`), the only files it serves."""

    def __init__(self, mounts: dict[str, Path] | None = None) -> None:
        self.mounts = {name: root.absolute() for name, root in (mounts or {}).items()}
        # Every bundle file a page links to: all that a server may serve besides the pages.
        self.linked: set[Path] = set()

    def file(self, page: Path, target: Path) -> str | None:
        if not self.mounts:
            self.linked.add(target)
            return quote(os.path.relpath(target, page.parent))
        for name, root in self.mounts.items():
            if root in target.parents:
                self.linked.add(target)
                return "/files/" + quote(f"{name}/{target.relative_to(root).as_posix()}")
        return None

    @staticmethod
    def page(page: Path, target: Path) -> str:
        return quote(os.path.relpath(target, page.parent))


@dataclass
class Site:
    main: Path
    pages: list[Path] = field(default_factory=list)
    verified: bool = True
    # The bundle files the pages link to, each with its SHA-256 when the site was built.
    files: dict[Path, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GanttRow:
    label: str
    depth: int
    x: float
    w: float
    y: int
    start: float
    duration: float
    css: str
    detail: str


@dataclass(frozen=True)
class Gantt:
    rows: list[GanttRow]
    width: int
    height: int
    label_width: int


def gantt(timeline: Timeline, width: int = 1100, label_width: int = 300) -> Gantt:
    spans = timeline.spans[:_GANTT_ROWS]
    scale = (width - label_width - 70) / max(timeline.total_ms, 1.0)
    rows = []
    for i, span in enumerate(spans):
        css = "bar-error" if span.status == "error" else f"bar-{span.source}"
        rows.append(GanttRow(
            label=span.name[:48], depth=min(span.depth, 6),
            x=round(label_width + span.start_ms * scale, 1),
            w=round(max(span.duration_ms * scale, 1.5), 1), y=i * 18, start=span.start_ms,
            duration=span.duration_ms, css=css, detail=span.detail,
        ))
    return Gantt(rows, width, len(rows) * 18 + 4, label_width)


def display_path(path: Path) -> str:
    """A folder as a person reads it: relative to the working directory when under it, with
    `~` for the home directory, else absolute; made inert."""
    here, home = Path.cwd(), Path.home()
    if path == here or here in path.parents:
        return inert(path.relative_to(here).as_posix() or ".")
    if home != Path("/") and home in path.parents:
        return inert("~/" + path.relative_to(home).as_posix())
    return inert(str(path))


def _write(path: Path, html: str, site: Site) -> None:
    atomic_write_text(path, html)
    site.pages.append(path)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _nav(page: Path, crumbs: list[tuple[str, Path]]) -> list[tuple[str, str]]:
    return [(label, Links.page(page, target)) for label, target in crumbs]


def render_run(env: Environment, run: RunView, out: Path, links: Links, site: Site, *,
               crumbs: list[tuple[str, Path]] | None = None, is_baseline: bool = False,
               load_baseline: Callable[[Path], RunView] | None = None) -> None:
    """The run's page at `out`, and its baseline's page beside it (`<stem>-baseline.html`)."""
    crumbs = crumbs or []
    baseline_page = out.with_name(out.stem + "-baseline.html")
    baseline_href = None
    if run.has_baseline and load_baseline is not None:
        render_run(env, load_baseline(run.root / "baseline"), baseline_page, links, site,
                   crumbs=[*crumbs, (f"run {run.case_id}", out)], is_baseline=True)
        baseline_href = Links.page(out, baseline_page)
    html = env.get_template("run.html.j2").render(
        title=f"{run.verdict.upper() if run.verification.ok else 'UNVERIFIED'} · {run.case_id} "
              f"· cto-harness",
        run=run, unverified=not run.verification.ok, is_baseline=is_baseline,
        nav=_nav(out, crumbs), bundle_label=display_path(run.root),
        diff_html=Markup(highlight(run.diff, DiffLexer(), _FORMATTER)) if run.diff else "",
        gantt=gantt(run.timeline), baseline_href=baseline_href,
        href=lambda rel: links.file(out, run.root / rel),
        unlisted_ok=("artifacts.sha256", "freshness.json", "evidence.dsse.json"),
        admission=run.admission, generated_at=_now(),
    )
    _write(out, html, site)
    site.verified = site.verified and run.verification.ok


def run_pages_dir(out: Path) -> Path:
    return out.with_name(out.stem + "-runs")


def render_suite(env: Environment, suite: SuiteView, out: Path, links: Links, site: Site, *,
                 crumbs: list[tuple[str, Path]] | None = None,
                 load_baseline: Callable[[Path], RunView] | None = None) -> None:
    """The suite's page at `out` and one page per run in `<stem>-runs/` (named by position,
    never by anything suite.json says)."""
    crumbs = crumbs or []
    folder = run_pages_dir(out)
    run_pages: dict[int, str] = {}
    # One page per bundle folder, however many rows of suite.json name it (each row would
    # otherwise write a page as large as the bundle's diff and logs).
    pages_of: dict[Path, str] = {}
    for entry in suite.runs:
        if entry.run is None:
            continue
        if entry.run.root not in pages_of:
            page = folder / f"run-{entry.index + 1:04d}.html"
            render_run(env, entry.run, page, links, site, load_baseline=load_baseline,
                       crumbs=[*crumbs, ("suite", out)])
            pages_of[entry.run.root] = Links.page(out, page)
        run_pages[entry.index] = pages_of[entry.run.root]
    plot_width = 220
    longest = max(suite.max_duration(), 1)
    plots = {
        case_id: [
            {"x": round(5 + (r.run.duration_ms or 0) / longest * (plot_width - 10), 1),
             "status": r.status, "repeat": r.repeat, "ms": r.run.duration_ms}
            for r in suite.by_case.get(case_id, []) if r.verified and r.run is not None
        ]
        for case_id in suite.aggregates
    }
    grid = [(case_id, cells, " ".join(sorted({c.status if c else "missing" for c in cells})))
            for case_id, cells in suite.grid()]
    html = env.get_template("suite.html.j2").render(
        title=f"suite · {len(suite.cases)} cases · cto-harness", suite=suite,
        unverified=not suite.all_verified, nav=_nav(out, crumbs),
        suite_label=display_path(suite.root), run_pages=run_pages, plots=plots,
        plot_width=plot_width, grid=grid,
        unverified_runs=[r for r in suite.runs if not r.verified], generated_at=_now(),
    )
    _write(out, html, site)
    site.verified = site.verified and suite.all_verified


def render_run_comparison(env: Environment, cmp: RunComparison, out: Path, links: Links,
                          site: Site, load_baseline: Callable[[Path], RunView]) -> None:
    _render_comparison(env, cmp, render_run, "compare_runs.html.j2", "comparison",
                       not cmp.scored, out, links, site, load_baseline)


def render_suite_comparison(env: Environment, cmp: SuiteComparison, out: Path, links: Links,
                            site: Site, load_baseline: Callable[[Path], RunView]) -> None:
    _render_comparison(env, cmp, render_suite, "compare_suites.html.j2", "suite comparison",
                       not (cmp.a.all_verified and cmp.b.all_verified), out, links, site,
                       load_baseline)


def _render_comparison(env: Environment, cmp: RunComparison | SuiteComparison,
                       render_side: Callable[..., None], template: str, title: str,
                       unverified: bool, out: Path, links: Links, site: Site,
                       load_baseline: Callable[[Path], RunView]) -> None:
    """Each side's own page (`<out>-a.html`, `<out>-b.html`), then the page comparing them."""
    pages = {"A": out.with_name(out.stem + "-a.html"), "B": out.with_name(out.stem + "-b.html")}
    for side, page in zip((cmp.a, cmp.b), pages.values(), strict=True):
        render_side(env, side, page, links, site, crumbs=[("comparison", out)],
                    load_baseline=load_baseline)
    html = env.get_template(template).render(
        title=f"{title} · cto-harness", cmp=cmp, unverified=unverified,
        page_a=Links.page(out, pages["A"]), page_b=Links.page(out, pages["B"]),
        labels={"A": display_path(cmp.a.root), "B": display_path(cmp.b.root)}, generated_at=_now(),
    )
    _write(out, html, site)
