"""`python -m pxelab`: the same as the `pxelab` command."""

from pxelab.cli import main

raise SystemExit(main())
