import sys

from flaxnets.cli import main

sys.exit(main())
