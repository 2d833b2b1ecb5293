"""``python -m hireslm`` (and ``accelerate launch -m hireslm``) run the command line."""

import sys

from hireslm.cli.main import main

sys.exit(main())
