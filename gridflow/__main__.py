"""``python -m gridflow`` is the ``gridflow`` command."""

import sys

try:
    from gridflow.cli import main
except KeyboardInterrupt:  # Ctrl-C while the command line module is imported: as main would say it
    print("gridflow: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
