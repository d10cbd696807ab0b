import sys

from rlhf.train.cli import main

sys.exit(main())
