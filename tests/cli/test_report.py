"""baton report: the page of a run with failures, written by the CLI and read in a real
headless Chromium (Debian's; `.ci/run` installs it when missing)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from typer.testing import CliRunner

from baton import HandlerInfo, Task, open_store
from baton.cli import app
from baton.cli.reporting import _shown
from baton.events.model import Result, RunBudget, Usage
from baton.events.schema import AssignmentDispatched, ResultReceived
from baton.events.store import arrow
from baton.projections.metrics import run_stats
from baton.projections.report import html as page_of
from baton.projections.trace import trace
from baton.testing import Scenario
from tests.fixtures.golden import every_event_type
from tests.fixtures.policies import SendsBack
from tests.fixtures.tree import record_tree
from tests.projections.test_report import HOSTILE, seeded_run

SCREENSHOT = Path(__file__).resolve().parents[2] / "build" / "report.png"  # for a person


def report(*args: str) -> Any:
    return CliRunner().invoke(app, ["report", *args])


def test_report_writes_one_page_and_says_where(store_url: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The page goes where -o says (its folders made), the path on stderr; --json says
    it on stdout; RUN.html when -o is not given."""
    with open_store(store_url) as store:
        seeded_run(store)
    target = tmp_path / "reports" / "today" / "seeded.html"
    done = report("seeded", "-o", str(target), "--store", store_url)
    assert done.exit_code == 0, done.output
    assert done.stdout == "" and f"wrote the report of seeded to {target}" in done.stderr
    assert target.read_text(encoding="utf-8").startswith("<!doctype html>")
    done = report("seeded", "-o", str(target), "--store", store_url, "--json")
    assert json.loads(done.stdout)["path"] == str(target)
    monkeypatch.chdir(tmp_path)
    assert report("seeded", "--store", store_url).exit_code == 0
    assert (tmp_path / "seeded.html").exists()


def test_report_of_an_unknown_run_is_bad_input(store_url: str, tmp_path: Path) -> None:
    """An unknown run: exit 2, saying so, and no file written."""
    target = tmp_path / "nothing.html"
    done = report("nope", "-o", str(target), "--store", store_url)
    assert done.exit_code == 2 and "nope" in done.stderr and not target.exists()


def test_stats_gives_people_tables_and_machines_the_same_figures(store_url: str) -> None:
    """`baton stats RUN --json` is run_stats of the run's exported table; without --json,
    a line for the run, each handler's attempts and seconds, and decisions by rule; the
    report carries the same tables. An unknown run is bad input (exit 2)."""
    with open_store(store_url) as store:
        seeded_run(store)
        expected = run_stats(arrow.table(store, ["seeded"])).as_dict()
    done = CliRunner().invoke(app, ["stats", "seeded", "--store", store_url, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == json.loads(json.dumps(expected))
    assert {h["handler"] for h in expected["handlers"]} == {"fast", "careful", "adder"}

    shown = CliRunner().invoke(app, ["stats", "seeded", "--store", store_url]).stdout
    assert shown.startswith(f"seeded  {expected['events']} events over")
    for handler in expected["handlers"]:
        assert f" {handler['handler']} " in shown
    assert "route.least_loaded" in shown and "decisions by rule" in shown

    with open_store(store_url) as store:
        page = page_of(store.read("seeded"), _shown(run_stats(arrow.table(store, ["seeded"]))))
    assert "per handler" in page and "queue wait p50/p95/p99 (s)" in page
    done = CliRunner().invoke(app, ["stats", "nope", "--store", store_url])
    assert done.exit_code == 2 and "nope" in done.stderr


def test_stats_of_a_run_without_a_clock_or_with_markup_in_its_names(store_url: str) -> None:
    """A scripted run records no times and its handler's name holds brackets: `baton
    stats` prints '-' for what it cannot know, and the name as it is."""
    with open_store(store_url) as store:
        run = Scenario([Task(id="a", capability="count")],
                       [HandlerInfo(name="gpt[/]", capabilities=("count",))],
                       run_id="unclocked", store=store)
        run.succeed("a#1", {"count": 1})
    done = CliRunner().invoke(app, ["stats", "unclocked", "--store", store_url])
    assert done.exit_code == 0, done.output
    assert "events over -; 1 attempts (-), 1 accepted (-)" in done.stdout
    assert " gpt[/] " in done.stdout


def test_a_report_that_cannot_be_written_is_bad_input(store_url: str, tmp_path: Path) -> None:
    """-o naming a directory, or a path under a file: exit 2, saying where."""
    with open_store(store_url) as store:
        seeded_run(store)
    (tmp_path / "a.db").write_text("")
    for target in (tmp_path, tmp_path / "a.db" / "x.html"):
        done = report("seeded", "-o", str(target), "--store", store_url)
        assert done.exit_code == 2 and f"cannot write the report to {target}" in done.stderr


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (never its own browser builds).
    Missing, it skips the test on a desk and fails it in CI."""
    executable = shutil.which("chromium")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no chromium: `apt-get install chromium` (CI installs it)")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, headless=True)
        yield browser
        browser.close()


def opened(browser: Browser, path: Path, fragment: str = "") -> tuple[Page, list[str],
                                                                       list[str]]:
    """The page loaded from its file (at `fragment`, when given), with the errors it
    raised and every URL it asked for."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    errors: list[str] = []
    asked: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("request", lambda request: asked.append(request.url))
    page.goto(path.as_uri() + (f"#{fragment}" if fragment else ""))
    page.wait_for_selector("body[data-ready=true]")
    return page, errors, asked


def test_the_report_of_a_failed_run_in_chromium(store_url: str, tmp_path: Path,
                                                chromium: Browser) -> None:
    """Every task is on the rendered page; the failed, rejected, timed-out and lost
    attempts are marked; a bar's details name its assignment, routing rule and state
    digest, with its task's trace beside them; a task in the table leads to its trace.
    The screenshot stays in build/report.png for a person to look at."""
    with open_store(store_url) as store:
        run = seeded_run(store)
    target = tmp_path / "seeded.html"
    assert report("seeded", "-o", str(target), "--store", store_url).exit_code == 0
    page, errors, asked = opened(chromium, target)
    assert errors == [] and asked == [target.as_uri()]
    assert page.evaluate("window.pwned") is None  # the hostile output stayed text

    rows = page.locator("#tasks tbody tr")
    assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.task)")) == sorted(
        run.state.tasks)
    listed = page.inner_text("#tasks")
    assert all(task_id in listed for task_id in run.state.tasks)
    assert page.inner_text("#run-id") == "seeded" and page.inner_text("#run-status") == "completed"

    drawn = dict(page.locator("#timeline-svg .bar").evaluate_all(
        "bars => bars.map(b => [b.dataset.assignment, b.dataset.outcome])"))
    dispatched = [e for e in run.log if isinstance(e, AssignmentDispatched)]
    assert set(drawn) == {e.assignment.id for e in dispatched}
    assert {aid: drawn[aid] for aid in ("flaky#1", "negative#1", "slow#1", "lost#1",
                                        "stubborn#2", "total#1")} == {
        "flaky#1": "failed", "negative#1": "rejected", "slow#1": "timed out",
        "lost#1": "lost", "stubborn#2": "failed", "total#1": "accepted"}
    assert page.locator("#timeline-svg .bar.o-failed").count() == 5
    assert page.locator("#timeline-svg .marker.escalate").count() == 1
    assert page.locator("#timeline-svg .marker.replaced").count() == 1
    assert "fast · no report" in page.inner_text("#lane-labels")

    page.hover('#timeline-svg .bar[data-assignment="slow#1"]')
    assert "timed out" in page.inner_text("#tooltip")

    routed = next(e for e in dispatched if e.assignment.id == "negative#1")
    page.click('#timeline-svg .bar[data-assignment="negative#1"]')
    details = page.inner_text("#details")
    assert "negative#1" in details and routed.reason.rule in details
    assert routed.state_digest in details and "validate.rejected" in details
    assert "count must not be negative" in details
    shown = page.locator("#trace li.step").evaluate_all("steps => steps.map(s => +s.dataset.seq)")
    assert shown == [step.seq for step in trace(run.log, "negative")]
    assert page.locator("#trace").is_visible()

    page.click('#tasks tbody tr[data-task="extra"] button')
    steps = page.locator('#trace ol[data-task="extra"] li.step')
    assert steps.evaluate_all("steps => steps.map(s => +s.dataset.seq)") == [
        step.seq for step in trace(run.log, "extra")]
    assert steps.first.is_visible() and "recover.abandon_optional" in steps.first.inner_text()
    assert [b.inner_text() for b in page.locator("#details button").all()] == [
        "extra#1", "extra#2"]
    page.click(f'#tasks tbody tr[data-task="{HOSTILE}"] button')
    assert HOSTILE in page.inner_text("#trace h3")

    page.click('#timeline-svg .bar[data-assignment="stubborn#2"]')
    page.mouse.move(0, 0)
    # As tall as the page, so the side panel (as tall as the window) shows the whole trace.
    page.set_viewport_size({"width": 1600, "height": page.evaluate(
        "Math.max(document.body.scrollHeight, document.getElementById('side').scrollHeight)")})
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.close()


def test_every_kind_of_run_draws_in_chromium(tmp_path: Path, chromium: Browser) -> None:
    """Runs with no clock (drawn by seq), cancelled, forked, with a stuck worker or a
    person's answer: each page draws with no script error, every task listed, and a link
    to an attempt (#a=ID) opens on its details."""
    for run in every_event_type():
        target = tmp_path / f"{run.run_id}.html"
        target.write_text(page_of(run.log), encoding="utf-8")
        first = next(e.assignment.id for e in run.log if isinstance(e, AssignmentDispatched))
        page, errors, _ = opened(chromium, target, f"a={quote(first)}")
        assert errors == [], run.run_id
        assert sorted(page.locator("#tasks tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.task)")) == sorted(run.state.tasks)
        assert "by seq" in page.inner_text("#axis-unit")
        assert first in page.inner_text("#details h3")
        assert page.locator("#trace li.step").count() >= 2
        page.close()


def agents_run(store: Any = None) -> Scenario:
    """An agent's run with a budget: each answer reports its usage (one model unpriced)
    and transcript; the check sends task a back once."""
    run = Scenario([Task(id="a", capability="count"), Task(id="b", capability="count")],
                   [HandlerInfo(name="researcher", capabilities=("count",))], SendsBack(),
                   run_id="agents", store=store,
                   budget=RunBudget(max_cost_usd=1.0, max_tokens=10_000))
    for aid, output, model, cost in [("a#1", {"count": 1}, "openai:gpt-4o", 0.0006),
                                     ("b#1", {"count": 2}, "acme:mystery", None),
                                     ("a#2", {"count": 3, "redone": True}, "openai:gpt-4o",
                                      0.0006)]:
        said = [{"kind": "request", "parts": [{"part_kind": "user-prompt",
                                               "content": f"Count for {aid}."}]},
                {"kind": "response", "parts": [{"part_kind": "tool-call", "args": output}]}]
        run.stimulate(ResultReceived, result=Result(
            assignment_id=aid, output=output, transcript=said, usage=Usage(
                model=model, requests=1, input_tokens=120, output_tokens=30, cost_usd=cost)))
    assert run.state.status == "completed"
    return run


def test_show_stats_and_the_report_say_what_an_agents_run_spent_and_has_left(
        store_url: str, tmp_path: Path, chromium: Browser) -> None:
    """`baton show` and `baton stats` print the spend and what is left of each limit;
    the report's summary says so too, and an attempt's panel shows what its answer
    spent, its transcript in short, and that the check sent it back."""
    with open_store(store_url) as store:
        run = agents_run(store)
    left = "budget left: $0.9988 of $1.0000; 9,550 of 10,000 tokens"
    shown = CliRunner().invoke(app, ["show", "agents", "--store", store_url]).stdout
    assert "spent 3 model requests, 360 tokens in, 90 out; $0.0012 and 1 answer(s) " \
           "unpriced" in shown and left in shown
    assert left in CliRunner().invoke(app, ["stats", "agents", "--store", store_url]).stdout
    figures = json.loads(CliRunner().invoke(
        app, ["stats", "agents", "--store", store_url, "--json"]).stdout)
    assert figures["budget"]["limits"] == {"max_cost_usd": 1.0, "max_tokens": 10_000}
    assert figures["budget"]["tokens_left"] == 9_550

    target = tmp_path / "agents.html"
    target.write_text(page_of(run.log), encoding="utf-8")
    page, errors, _ = opened(chromium, target, "a=a%231")
    assert errors == []
    assert left in page.inner_text("#summary")
    details = page.inner_text("#details")
    assert "sent back by the check: cite a source" in details
    assert "openai:gpt-4o · 1 request · 120 tokens in, 30 out · $0.0006" in details
    assert "request user-prompt: Count for a#1." in details
    page.click('#timeline-svg .bar[data-assignment="b#1"]')
    assert "cost unknown (no price for this model)" in page.inner_text("#details")
    page.close()


def test_the_report_of_a_tree_links_each_run_to_its_parent_and_children(
        store_url: str, tmp_path: Path, chromium: Browser) -> None:
    """`--tree` writes a page per run, side by side: the top one's summary links to its
    child, whose page links back to it and on to the grandchildren (the failed one
    marked so), each link opening the page beside it."""
    with open_store(store_url) as store:
        record_tree(store)
    target = tmp_path / "pages" / "audit.html"
    done = report("top", "--tree", "-o", str(target), "--store", store_url, "--json")
    assert done.exit_code == 0, done.output
    written = sorted(p.name for p in target.parent.iterdir())
    assert written == ["audit.html", "top.pkg-1.html", "top.pkg-1.mod-1.html",
                       "top.pkg-1.mod-2.html"]
    page, errors, asked = opened(chromium, target)
    assert errors == [] and asked == [target.as_uri()]
    assert "child runs" in page.inner_text("#summary")
    page.click('#summary a[href="top.pkg-1.html"]')
    page.wait_for_selector("body[data-ready=true]")
    assert page.url == (target.parent / "top.pkg-1.html").as_uri()
    summary = page.inner_text("#summary")
    assert "a child run of" in summary and "it answers pkg#1" in summary
    assert "mod#1 → top.pkg-1.mod-1 (failed)" in summary
    assert "mod#2 → top.pkg-1.mod-2 (accepted)" in summary
    page.click('#summary a[href="audit.html"]')
    page.wait_for_selector("body[data-ready=true]")
    assert page.url == target.as_uri()
    page.close()
