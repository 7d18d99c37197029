"""``python -m demobank.standins``: provision the local AWS stand-in (see :mod:`demobank.standins`)."""

from demobank.standins import main

raise SystemExit(main())
