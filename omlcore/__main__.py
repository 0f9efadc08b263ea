import sys

from omlcore.cli import main

sys.exit(main())
