"""Regenerate the OLED pages' reference PNGs: ``.venv/bin/python -m tests.hardware.regenerate`` (from the project root).

Prints each file it changed, added or removed. Look at every one of them
(scaled up) before committing: the tests can only tell that a picture
changed, a person tells whether it is still right.
"""

import os

from tests.hardware.test_pages import REFERENCE_DIR, regenerate


def main():
    report = regenerate()
    for status, name in report:
        print(f"{status:8} {os.path.join(os.path.relpath(REFERENCE_DIR), name)}")
    print(f"{len(report)} reference image(s) changed, added or removed" if report
          else "every reference image is up to date")


if __name__ == "__main__":
    main()
