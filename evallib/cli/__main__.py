"""`python -m evallib.cli`: the `evallib` command."""

from . import main

raise SystemExit(main())
