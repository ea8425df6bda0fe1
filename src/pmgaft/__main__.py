import sys

from pmgaft.cli import main

sys.exit(main())
