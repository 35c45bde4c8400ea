import sys

from rd_interp.cli import main

sys.exit(main())
