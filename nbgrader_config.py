"""nbgrader configuration: run every nbgrader command from the repository root.

    nbgrader generate_assignment ch04_scaled_dot_product --force
    nbgrader autograde ch04_scaled_dot_product
    nbgrader generate_feedback ch04_scaled_dot_product
    nbgrader export

Hidden checks read AUTOGRADER_SEED (a secret integer) and AUTOGRADER_DEVICE (cpu or cuda)
from the environment; see autograder/config.py. The settings themselves are built by
autograder/nbconfig.py, which also configures `python -m autograder release`.
"""

import os

from autograder.nbconfig import configure

configure(get_config(), os.path.dirname(os.path.abspath(__file__)))  # noqa: F821 (provided by nbgrader)
