# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import sys

from tests.lib.lab.cli import main

sys.exit(main())
