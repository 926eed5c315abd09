"""Code interpreter sandbox benchmark: what one run of code costs beyond the code itself.

Measures, on this machine, the wall time of ``Sandbox.run`` (bubblewrap,
namespaces, limits, a fresh working directory, reading back output and
created files) for:
- ``print`` alone: the sandbox's own cost;
- the same code run directly with ``python -c``, unsandboxed, for comparison;
- a pandas summary of a 1,000-row CSV given to the sandbox;
- a matplotlib PNG chart created and collected.

Each case runs ROUNDS times, one after another; medians are reported.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from hearth.sandbox import Sandbox

ROUNDS = 7
CSV = ("x,y\n" + "".join(f"{i},{(i * 37) % 101}\n" for i in range(1000))).encode()


def median_ms(action: Callable[[], object]) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    sandbox = Sandbox(slots=1)
    sandbox.check()
    cases = {
        "print, sandboxed": lambda: sandbox.run("print(1)"),
        "print, python -c (no sandbox)": lambda: subprocess.run([sys.executable, "-c", "print(1)"], check=True,
                                                                capture_output=True),
        "pandas describe of a 1,000-row CSV": lambda: sandbox.run(
            "import pandas as pd\nprint(pd.read_csv('data.csv').describe())", [("data.csv", CSV)]),
        "matplotlib PNG chart": lambda: sandbox.run(
            "import matplotlib.pyplot as plt\nplt.plot(range(100))\nplt.savefig('chart.png')"),
    }
    print(f"| case | median ms ({ROUNDS} runs) |\n|---|---|")
    for name, action in cases.items():
        print(f"| {name} | {median_ms(action):.0f} |")


if __name__ == "__main__":
    main()
