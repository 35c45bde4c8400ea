"""Size and first paint of a run's latent atlas in headless Chromium (Debian's, driven by Playwright).

    python analyses/atlas_first_paint.py rd_interp_demo          # after `make demo`
    python analyses/atlas_first_paint.py OUT --loads 5 --screenshot atlas.png

Opens OUT/report/atlas.html from a file URL `--loads` times in a fresh browser context each, reads the
first-contentful-paint entry and the time until the page says it is ready (its data decoded and the first
view drawn), and checks that no request left the page. Prints a line per load, then ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-dev-shm-usage", "--no-first-run"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="a run folder (its report/atlas.html) or an atlas .html file")
    ap.add_argument("--loads", type=int, default=3)
    ap.add_argument("--screenshot", default=None, help="save a screenshot of the last load here")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium", help="the Chromium executable")
    args = ap.parse_args(argv)
    path = Path(args.out)
    path = path if path.suffix == ".html" else path / "report" / "atlas.html"
    if not path.is_file():
        sys.exit(f"atlas_first_paint: {path}: no atlas there (run `make demo` or `rd-interp atlas OUT`)")
    if not Path(args.chromium).is_file():
        sys.exit(f"atlas_first_paint: {args.chromium}: no Chromium (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    url = path.resolve().as_uri()
    fcp, ready, left = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        for i in range(args.loads):
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            ctx.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:")
                      else (left.append(r.request.url), r.abort()))
            page = ctx.new_page()
            t0 = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("body[data-ready]", timeout=60000)
            ready.append(1000 * (time.perf_counter() - t0))
            fcp.append(page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime"))
            print(f"load {i + 1}: first contentful paint {fcp[-1]:.0f} ms, ready {ready[-1]:.0f} ms")
            if args.screenshot and i == args.loads - 1:
                page.screenshot(path=args.screenshot)
            ctx.close()
        version = browser.version
        browser.close()
    out = {"atlas": str(path), "bytes": path.stat().st_size, "loads": args.loads,
           "first_contentful_paint_ms_median": round(statistics.median(fcp), 1),
           "ready_ms_median": round(statistics.median(ready), 1), "requests_left_page": left,
           "chromium": version}
    print(f"{path}: {out['bytes'] / 1e6:.2f} MB, first contentful paint {out['first_contentful_paint_ms_median']:.0f} ms "
          f"(median of {args.loads}), ready {out['ready_ms_median']:.0f} ms; requests that left the page: {len(left)}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
