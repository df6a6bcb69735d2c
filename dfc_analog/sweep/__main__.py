import sys

from dfc_analog.sweep.cli import main

sys.exit(main())
