"""Seconds from opening the Models page (MiniLM cached in the server) to its six heatmaps and the
cost bars drawn in Chromium. `python -m bench.models_page_browser` (needs Debian's chromium)."""
import time, subprocess, os, tempfile, urllib.request, sys
from playwright.sync_api import sync_playwright
port=8811
proc = subprocess.Popen([sys.executable, "-m", "ui.serve", "--server.port", str(port), "--server.headless", "true"], cwd="/work/main", env={**os.environ, "ATTN_HOME": tempfile.mkdtemp()}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while True:
    try: urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1); break
    except Exception: time.sleep(0.1)
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless","--no-sandbox","--disable-gpu","--disable-background-networking"])
    for i in range(4):
        pg = b.new_page(viewport={"width":1500,"height":1100})
        t0=time.perf_counter()
        pg.goto(f"http://127.0.0.1:{port}/models?tokens=128")
        pg.wait_for_selector('[data-testid="stApp"] h1', timeout=60000)
        while pg.locator(".js-plotly-plot .heatmaplayer").count() < 6 or pg.locator(".js-plotly-plot .barlayer").count() < 1:
            time.sleep(0.05)
            if time.perf_counter()-t0 > 60: break
        print(f"run {i}: maps+cost bars drawn in {time.perf_counter()-t0:.2f} s")
        pg.close()
    b.close()
proc.terminate()
