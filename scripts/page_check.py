"""Check a slice-map page (`index.html` of `cta2mbf slicemap` or the demo) in a real browser.

usage: python3 scripts/page_check.py INDEX_HTML

Opens the page by file:// URL in headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) and checks that:
- every viewer panel is titled (real_a, real_b, fake_b, |error|) and carries a colour bar
  (HU for real_a, ml/100 g/min for the others), the table has the baseline row and the page
  has the learning-curve plot with at least one line;
- every montage the table links to exists;
- switching the variant, switching the case and moving the slider (keyboard, then Home)
  each change the src of every panel image, and the new images load (naturalWidth > 0);
- no console error, uncaught exception or failed request occurs.
Prints what it checked; exits 1 with the failures listed otherwise.
(needs: pip install playwright; apt-get install chromium. Never `playwright install`.)
"""
import os
import sys
from urllib.parse import unquote, urlparse

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TITLES = ["real_a", "real_b", "fake_b", "|error|"]
UNITS = ["HU", "ml/100 g/min", "ml/100 g/min", "ml/100 g/min"]
IMAGES = ".panels img"


def main(page_path):
    page_path = os.path.abspath(page_path)
    if not os.path.isfile(page_path):
        sys.exit(f"{page_path}: no such page")
    failures, events = [], []

    def check(ok, what):
        if not ok:
            failures.append(what)
        return ok

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.on("console", lambda m: m.type == "error" and events.append(f"console error: {m.text}"))
        page.on("pageerror", lambda e: events.append(f"uncaught exception: {e}"))
        page.on("requestfailed", lambda r: events.append(f"failed request: {r.url} ({r.failure})"))
        page.goto("file://" + page_path)

        def srcs():
            return page.eval_on_selector_all(IMAGES, "imgs => imgs.map(i => i.getAttribute('src'))")

        def loaded(what):
            try:
                page.wait_for_function(
                    f"[...document.querySelectorAll('{IMAGES}')].every(i => i.complete)", timeout=10000)
            except Exception as e:  # noqa: BLE001 - reported as a failure, not a crash
                check(False, f"{what}: images still loading after 10 s ({e})")
                return
            widths = page.eval_on_selector_all(IMAGES, "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")
            for src, width in widths:
                check(width > 0, f"{what}: image {src} did not load")

        # Titles, colour bars, baseline row, learning curve.
        figures = page.eval_on_selector_all(".panels figure", """fs => fs.map(f => [
            f.querySelector('figcaption') ? f.querySelector('figcaption').innerText : '',
            f.querySelector('svg.colorbar') ? f.querySelector('svg.colorbar').textContent : ''])""")
        if check(len(figures) == len(TITLES), f"{len(figures)} viewer panels, expected {len(TITLES)}"):
            for (caption, bar), title, unit in zip(figures, TITLES, UNITS):
                check(caption.split()[:1] == [title], f"panel titled {caption!r}, expected {title!r} first")
                check(unit in bar, f"panel {title}: colour bar {bar!r} lacks the unit {unit!r}")
        check(page.locator("tr.baseline").count() == 1, "no baseline row in the table")
        check(page.locator("svg#learning-curve polyline").count() >= 1, "no learning-curve plot with a line")
        for href in page.eval_on_selector_all("table a", "as => as.map(a => a.href)"):
            target = unquote(urlparse(href).path)
            check(os.path.isfile(target), f"table links to {target}, which does not exist")
        loaded("page load")

        def act(what, action):
            before = srcs()
            action()
            after = srcs()
            for b, a in zip(before, after):
                check(a != b, f"{what}: image src stayed {b}")
            loaded(what)
            print(f"page_check: {what}: {after[0]} ...")

        variants = page.locator("#variant option").count()
        if check(variants >= 2, f"{variants} variant(s) to choose, the check needs 2"):
            act("switch variant", lambda: page.select_option("#variant", index=1))
        cases = page.locator("#case option").count()
        if check(cases >= 2, f"{cases} case(s) to choose, the check needs 2"):
            act("switch case", lambda: page.select_option("#case", index=1))
        slider = page.locator("#slice")

        def step():
            at, top = slider.evaluate("s => [+s.value, +s.max]")
            slider.focus()
            page.keyboard.press("ArrowRight" if at < top else "ArrowLeft")

        act("move slider one step", step)
        act("move slider to the first or last slice", lambda: (slider.focus(), page.keyboard.press("Home" if int(slider.input_value()) > 0 else "End")))
        page.wait_for_timeout(200)
        browser.close()
    failures += events
    if failures:
        print(f"page_check: {page_path}: {len(failures)} failure(s):", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        sys.exit(1)
    print(f"page_check: {page_path}: ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
