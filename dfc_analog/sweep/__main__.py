from dfc_analog.cli import quiet_startup

quiet_startup()

import sys  # noqa: E402

from dfc_analog.sweep.cli import main  # noqa: E402

sys.exit(main())
