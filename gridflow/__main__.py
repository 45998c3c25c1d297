"""``python -m gridflow`` is the ``gridflow`` command."""

import sys

try:
    from gridflow.cli import main
except (KeyboardInterrupt, ImportError) as exc:  # Ctrl-C while the command line module is imported
    chain, seen = exc, set()
    while chain is not None and not isinstance(chain, KeyboardInterrupt) and id(chain) not in seen:
        seen.add(id(chain))
        chain = chain.__cause__ or chain.__context__
    if not isinstance(chain, KeyboardInterrupt):
        raise
    print("gridflow: interrupted", file=sys.stderr)     # as main would say it
    raise SystemExit(130) from None

raise SystemExit(main())
