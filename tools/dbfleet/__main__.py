import sys

from dbfleet.cli import main

sys.exit(main())
