"""Each alert of deploy/prometheus/alerts.yml links its runbook in docs/runbooks.md (what it
means, what to check, what to do), and has a promtool unit test in alerts_test.yml where it
fires (test_promql.py runs them)."""

import re

import yaml

from tests.deploy.test_promql import ALERTS_TEST, alert_rules

RUNBOOKS = ALERTS_TEST.parents[2] / "docs" / "runbooks.md"
# The sections every runbook has, in this order.
RUNBOOK_PARTS = ("**What it means.**", "**What to check.**", "**What to do.**")


def runbook_sections() -> dict[str, str]:
    """docs/runbooks.md's `## Alert` sections by their anchor (GitHub's: the heading lowered)."""
    sections = re.split(r"^## ", RUNBOOKS.read_text(), flags=re.MULTILINE)[1:]
    return {s.split("\n", 1)[0].strip().lower(): s for s in sections}


def test_every_alert_links_its_runbook_and_the_runbook_says_what_to_do() -> None:
    sections = runbook_sections()
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/runbooks.md#{rule['alert'].lower()}", rule["alert"]
        body = sections[url.split("#")[1]]
        positions = [body.find(part) for part in RUNBOOK_PARTS]
        assert -1 not in positions, f"{rule['alert']}: a runbook has {RUNBOOK_PARTS}"
        assert positions == sorted(positions), rule["alert"]


def test_every_alert_has_a_promtool_unit_test() -> None:
    cases = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    tested = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if check.get("exp_alerts")  # one where it fires, not only where it stays quiet
    }
    assert tested == {rule["alert"] for rule in alert_rules()}
