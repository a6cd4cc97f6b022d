"""python -m xpuperf.contract_kit --hardware NAME [pytest options]: the contract kit
on a backend, from a checkout or an installed wheel alike."""
import sys

import pytest

sys.exit(pytest.main(["-p", "xpuperf.contract_kit.plugin", "--pyargs", "xpuperf.contract_kit",
                      *sys.argv[1:]]))
