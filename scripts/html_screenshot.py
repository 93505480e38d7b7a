"""Render an HTML page or an image in a headless Chromium (Qt WebEngine) and save a PNG
screenshot, to look at what `cta2mbf slicemap` wrote as a browser shows it.

usage: python scripts/html_screenshot.py PAGE_OR_IMAGE OUT.png [WIDTH HEIGHT [JS]]
  JS, when given, runs after the page has loaded (e.g. to pick a case or a slice), and the
  screenshot is taken a second later.
(needs: pip install PyQt6 PyQt6-WebEngine; runs without a display)
"""
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--no-sandbox --disable-gpu")

from PyQt6.QtCore import QTimer, QUrl  # noqa: E402
from PyQt6.QtWebEngineWidgets import QWebEngineView  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

page, out = sys.argv[1], sys.argv[2]
width, height = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (1280, 900)
script = sys.argv[5] if len(sys.argv) > 5 else None

app = QApplication(sys.argv[:1])
view = QWebEngineView()
view.resize(width, height)


def grab():
    if not view.grab().save(out):
        sys.exit(f"{out}: could not write the screenshot")
    print(f"{page} -> {out} ({width}x{height})")
    app.quit()


def loaded(ok):
    if not ok:
        print(f"{page}: the page did not load", file=sys.stderr)
        app.exit(1)
        return
    if script:
        view.page().runJavaScript(script)
    QTimer.singleShot(1500, grab)


view.loadFinished.connect(loaded)
view.load(QUrl.fromLocalFile(os.path.abspath(page)))
view.show()
sys.exit(app.exec())
