"""Prefect blocks and automations: `python -m blocks.register` creates them."""
