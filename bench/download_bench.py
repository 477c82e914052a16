r"""Time to fetch the default photo set through atlasjax.data.fetch (pooch).

  python bench/download_bench.py                     # 200 photos, 60 ms latency
  python bench/download_bench.py --n=1000 --latency_ms=100

No internet is needed: a loopback HTTP server serves random bytes of the
pinned photos' sizes (the first --n files of the manifest) and waits
--latency_ms before every response, standing in for the round trip to
raw.githubusercontent.com. Each --workers value fetches the same files into an
empty cache in the same run (alternating rounds), so their ratio is the
figure to read; the warm pass re-verifies a complete cache (hashing only).
Prints one JSON line per (workers, round) and one summary line.
"""

import hashlib
import http.server
import json
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import machine  # noqa: E402

from atlasjax import data as data_lib  # noqa: E402

_N = flags.DEFINE_integer("n", 200, "Photos of the manifest to fetch.")
_LATENCY = flags.DEFINE_float("latency_ms", 60.0, "Wait before each response.")
_WORKERS = flags.DEFINE_list("workers", ["1", "8"], "Parallel downloads to compare.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating rounds.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random file contents.")


def _server(files: dict, latency_s: float):
  class Handler(http.server.BaseHTTPRequestHandler):

    def do_GET(self):  # noqa: N802
      time.sleep(latency_s)
      payload = files[urllib.parse.unquote(self.path.lstrip("/"))]
      self.send_response(200)
      self.send_header("Content-Length", str(len(payload)))
      self.end_headers()
      self.wfile.write(payload)

    def log_message(self, *args):
      pass

  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  return httpd


def main(argv):
  del argv
  rng = np.random.default_rng(_SEED.value)
  manifest = list(data_lib.photos_manifest().items())[:_N.value]
  files = {name: rng.integers(0, 256, size, dtype=np.uint8).tobytes()
           for name, (size, _) in manifest}
  total_mb = sum(len(b) for b in files.values()) / 1e6
  httpd = _server(files, _LATENCY.value / 1e3)
  source = data_lib.Source(
      f"http://127.0.0.1:{httpd.server_address[1]}/",
      {n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
  base = {"workload": "fetch photos", "files": len(files),
          "mb": round(total_mb, 1), "latency_ms": _LATENCY.value,
          "machine": machine.describe()}
  best = {}
  for r in range(_ROUNDS.value):
    for w in (int(v) for v in _WORKERS.value):
      folder = pathlib.Path(tempfile.mkdtemp(prefix="dl-bench-"))
      load = os.getloadavg()[0]
      t = time.perf_counter()
      data_lib.fetch(source, folder, desc="photos", workers=w)
      cold = time.perf_counter() - t
      t = time.perf_counter()
      data_lib.fetch(source, folder, desc="photos", workers=w)
      warm = time.perf_counter() - t
      shutil.rmtree(folder)
      best[w] = min(best.get(w, cold), cold)
      print(json.dumps({**base, "workers": w, "round": r,
                        "cold_s": round(cold, 2), "files_per_s": round(len(files) / cold, 1),
                        "warm_verify_s": round(warm, 2),
                        "loadavg_1m": round(load, 2)}), flush=True)
  httpd.shutdown()
  ws = sorted(best)
  print(json.dumps({**base, "summary": {str(w): round(best[w], 2) for w in ws},
                    "speedup": round(best[ws[0]] / best[ws[-1]], 2),
                    "loadavg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
  app.run(main)
