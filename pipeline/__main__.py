"""``python -m pipeline`` is the same program as ``survey-pipeline``."""

from pipeline.cli import main

raise SystemExit(main())
