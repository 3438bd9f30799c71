"""``python -m au_agent_cli``: the ``au-agent`` console script, for a checkout that is not installed."""
import sys

from au_agent_cli import main

sys.exit(main())
