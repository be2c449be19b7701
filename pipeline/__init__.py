"""survey-pipeline: ingest, clean, weight, estimate and export survey data from one YAML config."""

from __future__ import annotations

__version__ = "0.1.0"
