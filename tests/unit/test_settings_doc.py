"""docs/configuration.md is what `make settings-doc` makes from the settings classes."""

from pathlib import Path

from taskfleet.core.settings import Settings
from taskfleet_cli import settings_doc
from taskfleet_cli.configs import SERVICE_SETTINGS

COMMITTED = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_the_committed_page_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == settings_doc.render(), "run `make settings-doc` and commit"


def test_every_variable_has_one_row_naming_its_service() -> None:
    rows = [line.split(" | ") for line in settings_doc.render().splitlines() if line[:3] == "| `"]
    services = {row[0].strip("| `"): row[2] for row in rows}
    assert len(services) == len(rows)
    expected = {str(f.validation_alias): "all" for f in Settings.model_fields.values()}
    for service, cls in SERVICE_SETTINGS.items():
        own = (f for n, f in cls.model_fields.items() if n not in Settings.model_fields)
        expected |= {str(f.validation_alias): service for f in own}
    assert services == expected
    assert services["API_METRICS_PORT"] == "api"
    assert services["SMTP_URL"] == "tool-worker"
    assert services["AMQP_URL"] == "all"


def test_the_generator_writes_the_page(tmp_path: Path) -> None:
    target = tmp_path / "configuration.md"
    settings_doc.main([str(target)])
    assert target.read_text() == COMMITTED.read_text()
