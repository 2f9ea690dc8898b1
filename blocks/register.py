"""Create or update the Prefect blocks and automations Cryptolytics uses; safe to rerun:
the cloud target's blocks (blocks/gcp.py) and the alerts (blocks/alerts.py).

    python -m blocks.register

Values come from the settings (the environment or `.env`); the Prefect server is the one
`PREFECT_API_URL` points at. Nothing secret is printed.
"""

from __future__ import annotations

from blocks.alerts import register_alerts
from blocks.gcp import register_gcp
from flows.core.settings import get_settings


def main() -> None:
    settings = get_settings()
    for line in [*register_gcp(settings), *register_alerts(settings)]:
        print(line)


if __name__ == "__main__":
    main()
