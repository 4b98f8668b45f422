from __future__ import annotations

from orchestra.cli.main import main

main()
