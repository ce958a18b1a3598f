import sys

from safegbpo.cli import main

sys.exit(main())
