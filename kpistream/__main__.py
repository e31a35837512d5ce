import sys

from kpistream.cli import main

sys.exit(main())
