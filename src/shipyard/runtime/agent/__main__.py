import sys

from shipyard.runtime.agent import main

sys.exit(main())
