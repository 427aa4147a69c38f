"""``python -m core.infrastructure.models.provision``: convert the embedded model into the cache once."""

from __future__ import annotations

from core.domain.catalog import CATALOG, EMBEDDED_MODEL_NAME
from core.domain.config import load_settings
from core.infrastructure.models.embedded import ensure_embedded_model
from core.logging_setup import configure_logging


def main() -> None:
    """Provisions the embedded model into ``paths.model_cache`` (a no-op when already there)."""
    configure_logging()
    settings = load_settings()
    ensure_embedded_model(CATALOG[EMBEDDED_MODEL_NAME], settings.paths.model_cache)


if __name__ == "__main__":
    main()
