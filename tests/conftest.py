"""Each test starts without the pipeline's settings in its environment: `kare run` reads KARE_RULES_DIR,
KARE_INPUT, KARE_WAREHOUSE and KARE_AS_OF as defaults, and a value left by a module that sets one before
importing the Dagster layer (or exported in the developer's shell) would send another test's run to other
rules, input or warehouse. A module that needs them says so with `USES_PIPELINE_SETTINGS = True`."""

from __future__ import annotations

import pytest

PIPELINE_SETTINGS = ("KARE_RULES_DIR", "KARE_INPUT", "KARE_WAREHOUSE", "KARE_AS_OF")


@pytest.fixture(autouse=True)
def _without_pipeline_settings(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if not getattr(request.module, "USES_PIPELINE_SETTINGS", False):
        for name in PIPELINE_SETTINGS:
            monkeypatch.delenv(name, raising=False)
