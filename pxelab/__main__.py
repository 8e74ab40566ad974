"""`python -m pxelab`: the same as the `pxelab` command."""

from pxelab.cli.main import main

raise SystemExit(main())
