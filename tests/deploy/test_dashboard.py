"""deploy/grafana-dashboard.json: valid JSON, and every metric it plots is one the manager
exposes (manager/services/metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
# A histogram's series (prometheus_client: _bucket, _count and _sum).
HISTOGRAM_SERIES = re.compile(r"_(bucket|count|sum)$")


def test_dashboard_plots_only_metrics_that_exist():
    dashboard = json.loads(DASHBOARD.read_text())
    exposed = set(re.findall(r'"(manager_[a-z_]+)"', (ROOT / "manager/services/metrics.py").read_text()))  # fmt: skip
    assert "manager_hubs_connected" in exposed
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= set(re.findall(r"\bmanager_[a-z_]+", target["expr"]))
    unknown = {m for m in used if HISTOGRAM_SERIES.sub("", m) not in exposed}
    assert not unknown, f"not exposed by the manager: {sorted(unknown)}"
    assert len(dashboard["panels"]) >= 5
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
