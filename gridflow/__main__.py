"""``python -m gridflow`` is the ``gridflow`` command."""

from gridflow.cli import main

raise SystemExit(main())
