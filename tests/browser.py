"""Open an HTML report in a real headless Chromium (selenium, the Debian `chromium` and
`chromium-driver` packages) and measure what a reader would see: what spills off the page,
which images fail to load, what the console complains about, and which table comes first.

Nothing is downloaded: the driver path is passed to selenium's Service, so selenium-manager is
never asked to fetch a driver or a browser."""

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing():
    """Why the browser check cannot run here, or None when it can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            return f"{path} not found (Debian package {package}: apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    return None


@contextmanager
def chromium(width=1280, height=900):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="report-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ARGS + [f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        # the viewport itself is exactly width x height (the window size includes no toolbar
        # in headless mode, but this makes it independent of the Chromium version)
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(driver, html_path):
    driver.get(Path(html_path).resolve().as_uri())
    driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const imgs = Array.from(document.images).filter(i => !i.complete);
        if (!imgs.length) { done(); return; }
        let left = imgs.length;
        const one = () => { if (--left === 0) done(); };
        imgs.forEach(i => { i.addEventListener('load', one); i.addEventListener('error', one); });
        setTimeout(done, 10000);""")


MEASURE = """
const open_details = arguments[0];
if (open_details) document.querySelectorAll('details').forEach(d => d.open = true);
const W = document.documentElement.clientWidth;
function describe(el) {
  let s = el.tagName.toLowerCase();
  if (el.id) s += '#' + el.id;
  if (typeof el.className === 'string' && el.className.trim()) s += '.' + el.className.trim().split(/\\s+/).join('.');
  return s;
}
function scrollBox(el) {  // nearest ancestor that scrolls horizontally, or null
  for (let p = el.parentElement; p && p !== document.body && p !== document.documentElement; p = p.parentElement) {
    const ox = getComputedStyle(p).overflowX;
    if (ox === 'auto' || ox === 'scroll') return p;
  }
  return null;
}
const overflowing = [];
for (const el of document.body.querySelectorAll('*')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 && r.height === 0) continue;  // not rendered
  if (r.right <= W + 0.5 || scrollBox(el)) continue;
  overflowing.push({element: describe(el), right: Math.round(r.right), width: Math.round(r.width),
                    text: (el.innerText || el.getAttribute('alt') || '').trim().slice(0, 80)});
}
const broken = Array.from(document.images).filter(i => i.naturalWidth === 0).map(
  i => ({alt: i.getAttribute('alt'), src: (i.getAttribute('src') || '').slice(0, 60)}));
const table = document.querySelector('table');
let header = null, heading = null;
if (table) {
  const row = table.querySelector('tr');
  header = row ? Array.from(row.cells).map(c => c.innerText.trim()) : [];
  const h = document.evaluate('preceding::*[self::h1 or self::h2 or self::h3 or self::h4 or self::h5 or self::h6][1]',
                              table, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
  heading = h ? h.innerText.trim() : null;
}
const headlines = Array.from(document.querySelectorAll('.table-wrap.headline')).map(w => {
  const h = document.evaluate('preceding::*[self::h2 or self::h3][1]', w, null,
                              XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
  return {heading: h ? h.innerText.trim() : null, scroll_width: w.scrollWidth, client_width: w.clientWidth,
          table_width: Math.round(w.querySelector('table').getBoundingClientRect().width)};
});
return {viewport_width: W, page_width: document.documentElement.scrollWidth, overflowing: overflowing,
        broken_images: broken, n_images: document.images.length, first_table_header: header,
        first_table_heading: heading, headlines: headlines};
"""


def check_report(html_path, width=1280, height=900, open_details=True):
    """Open html_path at width x height px and return:
    viewport_width, page_width (document scroll width; > viewport_width means a horizontal scrollbar),
    overflowing: elements whose right edge passes the viewport (elements inside an overflow-x
      auto/scroll box are ignored, they scroll inside it; the box itself is checked),
    broken_images: <img> with naturalWidth == 0, n_images,
    first_table_header: the first table's header cells (list of str), first_table_header_text
      (them joined by tabs), first_table_heading: the heading just before that table,
    headlines: per headline results table (report.table kind="headline"): the heading before it,
      scroll_width and client_width of its scrolling wrapper (scroll_width > client_width: the
      table scrolls sideways) and table_width, the table's rendered width,
    console_errors: browser console messages of level SEVERE.
    All <details> are opened first (open_details) so folded content is measured too."""
    with chromium(width, height) as driver:
        _open(driver, html_path)
        result = driver.execute_script(MEASURE, open_details)
        result["console_errors"] = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    header = result["first_table_header"]
    result["first_table_header_text"] = None if header is None else "\t".join(header)
    return result


def screenshot(html_path, png_path, width=1280, height=900):
    """PNG of the first screen (width x height px) of html_path, as a reader opens it."""
    with chromium(width, height) as driver:
        _open(driver, html_path)
        Path(png_path).parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(png_path)):
            raise RuntimeError(f"screenshot of {html_path} failed")
    return png_path


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(check_report(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1280), indent=1))
