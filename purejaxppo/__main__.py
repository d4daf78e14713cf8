import sys

from purejaxppo.cli.main import console_main

sys.exit(console_main())
