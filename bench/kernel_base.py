"""RSS of an interpreter that imported the runtime and started nothing: the floor."""

import json

import supervisor  # noqa: F401  (what is measured is the import)
from bench.kernel import rss_mb

print(json.dumps({"rss": rss_mb()}))
