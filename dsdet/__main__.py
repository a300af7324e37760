"""`python -m dsdet` is the `dsdet` command."""

import sys

from dsdet.cli import main

sys.exit(main())
