#!/usr/bin/env python3
"""dashboard_metrics.py DASHBOARD STATS_HTTP_C: every lars_* series the
Grafana dashboard queries is one the agent exports (a name written in
core/agent/stats_http.c), the dashboard is valid JSON with panels and each
panel has a query. Prints what is wrong; exit 1 when anything is."""
import json
import re
import sys

dashboard_path, source_path = sys.argv[1], sys.argv[2]
exported = set(re.findall(r'"(lars_[a-z_]+)', open(source_path, encoding="utf-8").read()))
dashboard = json.load(open(dashboard_path, encoding="utf-8"))
problems = []
panels = dashboard.get("panels", [])
if not panels:
    problems.append("no panels")
for panel in panels:
    targets = panel.get("targets", [])
    if not targets:
        problems.append("panel %r has no query" % panel.get("title"))
    for target in targets:
        for name in re.findall(r"\blars_[a-z_]+", target.get("expr", "")):
            if name not in exported:
                problems.append("panel %r queries %s, which the agent does not export"
                                % (panel.get("title"), name))
for problem in problems:
    print(problem)
sys.exit(1 if problems else 0)
