"""Create or update the Prefect blocks and automations Cryptolytics uses; safe to rerun.

    python -m blocks.register

Values come from the settings (the environment or `.env`); the Prefect server is the one
`PREFECT_API_URL` points at. Nothing secret is printed.
"""

from __future__ import annotations

from blocks.alerts import register_alerts
from flows.settings import get_settings


def main() -> None:
    for line in register_alerts(get_settings()):
        print(line)


if __name__ == "__main__":
    main()
