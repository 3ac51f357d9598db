import sys

from pipeline.report.table import main

sys.exit(main())
