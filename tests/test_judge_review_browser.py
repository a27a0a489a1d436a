"""review.html's "Judge disagrees with your label" filter (issue #24), in a real headless Chromium: label three
items in the blind labeller, one against the judge's verdict; the filter shows exactly that one, with its badge and
the judge's verdict in both orders and its reasons. Skips only when Chromium is not installed."""
from __future__ import annotations

import pytest

from cdp import CHROMIUM, Browser
from review_fixture import CHOSEN, write_review_sweep

from harness.report.review import blind_flip, write_review

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")


def _key_for(sid: str, preferred: str) -> str:
    """The labeller key that prefers `preferred` (the adapter or few-shot) on item sid, or "t" for a tie."""
    if preferred == "tie":
        return "t"
    baseline_is_a = blind_flip("demo-clear_win", "demo", sid)
    return "a" if (preferred == "fewshot") == baseline_is_a else "b"


def test_filter_shows_items_where_the_judge_disagrees_with_your_label(tmp_path):
    sweep = write_review_sweep(tmp_path / "sweep")
    page_path = write_review(sweep, chosen=CHOSEN, primary=None)
    # the fixture's judge prefers the adapter on demo-000 and demo-002 and calls demo-001 a tie (orders disagree)
    mine = {"demo-000": "fewshot", "demo-001": "tie", "demo-002": CHOSEN}
    with Browser(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.goto(page_path.resolve().as_uri())
        assert page.eval("document.querySelector('#f-jlab .n').textContent") == "(0)"
        page.key("l")
        for _ in range(3):
            sid = page.eval("document.getElementById('lab-item').dataset.id")
            page.key(_key_for(sid, mine[sid]))
        page.key("Escape")
        assert page.eval("document.getElementById('n-labels').textContent") == "3"
        page.click("#f-jlab")
        ids = page.eval("[...document.querySelectorAll('#list article.item')].map(e => e.dataset.id)")
        assert ids == ["demo-000"]
        card = page.eval("document.querySelector('#list article.item').innerText")
        assert "judge disagrees with your label" in card
        assert "Order 1" in card and "Order 2" in card and "names the city correctly" in card
