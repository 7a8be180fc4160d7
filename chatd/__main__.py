"""`python -m chatd` runs the command line."""
import sys

from chatd.cli import main

sys.exit(main())
