"""The HTML leaderboard in a real headless Chromium, built from real lm-eval results of the tiny model.

No browser driver is needed: a copy of the page gets a small script at the top of <head> that
records errors, and after loading measures the plots and clicks a column header; Chromium's
``--dump-dom`` prints the page with the script's findings. Skipped when no Chromium is found,
except under CULTURE_REQUIRE_BROWSER=1 (CI installs it), where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from culture_tasks.leaderboard import main
from tests.lm_eval_helpers import evaluate
from tests.tiny_model import save_random_lora

REQUIRE_BROWSER = "CULTURE_REQUIRE_BROWSER"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TASKS = ("culturellm_english_hate_offensive", "culturellm_korean_waseem", "wvs_usa", "vsm13_usa")

HARNESS = """<script>
(function () {
  "use strict";
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message)); });
  var original = console.error;
  console.error = function () { errors.push(Array.prototype.join.call(arguments, " ")); original.apply(console, arguments); };
  function column(table, col) {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[col].getAttribute("data-sort"); });
  }
  window.addEventListener("load", function () {
    var out = { errors: errors, plots: [], sorted: {} };
    Array.prototype.forEach.call(document.querySelectorAll("figure.plot"), function (f) {
      var box = f.querySelector("svg").getBoundingClientRect();
      out.plots.push({ id: f.id, width: box.width, height: box.height });
    });
    try {
      var table = document.querySelector("table.score");
      var headers = table.tHead.rows[0].cells;
      var col = Array.prototype.findIndex.call(headers, function (h) { return h.textContent.trim() === "overall"; });
      out.sorted.before = column(table, col);
      headers[col].click();
      out.sorted.first = column(table, col);
      out.sorted.first_state = headers[col].getAttribute("aria-sort");
      headers[col].click();
      out.sorted.second = column(table, col);
      out.sorted.second_state = headers[col].getAttribute("aria-sort");
    } catch (e) { errors.push("harness: " + e); }
    var pre = document.createElement("pre");
    pre.id = "harness-result";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  });
})();
</script>"""


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def browser_or_skip() -> str:
    browser = find_browser()
    if browser is None:
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"no Chromium found ({', '.join(BROWSERS)}) and {REQUIRE_BROWSER}=1: "
                        "apt-get install -y chromium")
        pytest.skip(f"no Chromium found on PATH ({', '.join(BROWSERS)}); apt-get install -y chromium to run this test")
    return browser


def chromium(browser: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Headless Chromium, no sandbox (tests may run as root), no GPU, no network use needed."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--no-first-run", "--disable-extensions", "--virtual-time-budget=5000"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=timeout, check=False)


def run_harness(browser: str, page: Path) -> dict:
    html = page.read_text(encoding="utf-8")
    probe = page.with_name("probe_" + page.name)
    probe.write_text(html.replace("<head>", "<head>\n" + HARNESS, 1), encoding="utf-8")
    done = chromium(browser, "--window-size=1400,1000", "--dump-dom", probe.as_uri())
    dom = done.stdout
    start = dom.find('<pre id="harness-result">')
    assert start >= 0, f"the page did not finish loading in Chromium (rc {done.returncode}): {done.stderr[-2000:]}"
    text = dom[start + len('<pre id="harness-result">'):dom.index("</pre>", start)]
    return json.loads(text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&"))


@pytest.fixture(scope="module")
def lora_adapter(tiny_model, tmp_path_factory):
    return save_random_lora(tiny_model, tmp_path_factory.mktemp("report_lora"), seed=5)


@pytest.fixture(scope="module")
def report(tiny_model, lora_adapter, data_root, tmp_path_factory) -> Path:
    """Real result folders (lm-eval's own files, per-sample logs included): the base model and a LoRA adapter."""
    results = tmp_path_factory.mktemp("report_results")
    evaluate(tiny_model, TASKS, data_root, limit=24, output_path=results)
    evaluate(tiny_model, TASKS, data_root, limit=24, peft=lora_adapter, output_path=results)
    page = results.parent / "report" / "board.html"
    assert main([str(results), "--format", "html", "--output", str(page), "--baseline", tiny_model.name]) == 0
    return page


@pytest.fixture(scope="module")  # module scope, so that it is set up before the module-scoped report
def browser() -> str:
    return browser_or_skip()


def test_report_in_headless_chromium(browser, report):  # browser first: no browser, no evaluation
    found = run_harness(browser, report)
    assert found["errors"] == []
    ids = {p["id"] for p in found["plots"]}
    assert {"plot-culturellm_heatmap", "plot-vsm13_radar_usa", "plot-wvs_topics_wvs_usa"} <= ids
    assert all(p["width"] > 100 and p["height"] > 100 for p in found["plots"]), found["plots"]
    sort = found["sorted"]
    values = [float(v) for v in sort["before"]]
    assert len(values) == 2
    assert (sort["first_state"], [float(v) for v in sort["first"]]) == ("ascending", sorted(values))
    assert (sort["second_state"], [float(v) for v in sort["second"]]) == ("descending", sorted(values, reverse=True))


def test_report_rows_are_the_two_real_runs(report, lora_adapter):
    page = report.read_text()
    # --limit 24: both rows are partial runs, and say so in every score table
    assert page.count("† partial</span>") == 2 * page.count('<table class="sortable score">') > 0
    assert "LoRA" in page and str(lora_adapter) in page
    assert "(baseline)" in page and "vs baseline:" in page
    assert {p.name for p in (report.parent / "board_plots").iterdir()} >= {
        "culturellm_heatmap.png", "vsm13_radar_usa.png", "wvs_topics_wvs_usa.png"}
