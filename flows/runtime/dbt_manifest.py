"""Parse the dbt project ahead of the first tick: the last step of `make install` (and of the
image build), so a fresh worker process loads a saved manifest instead of parsing.

The parse is keyed by what could change it (flows/adapters/dbt_runner.py): when a project
file, the dbt version, the target or the profile's environment differs at run time, the
first tick parses as before and saves that parse for the next process. One line of output.

    python -m flows.runtime.dbt_manifest
"""

from __future__ import annotations

from flows.adapters.dbt_runner import manifest_cache_dir, warm_dbt
from flows.adapters.targets import resolve_target
from flows.core.settings import get_settings


def main() -> None:
    settings = get_settings()
    try:
        target = resolve_target(settings)
    except Exception as error:  # e.g. the cloud target's blocks need a server
        print(f"dbt manifest: not parsed ahead ({error}); the first tick will parse it")
        return
    runner = warm_dbt(target, str(settings.dbt_project_dir))
    _manifest, source, seconds = runner.manifest(target.dbt_target, target.dbt_env)
    where = manifest_cache_dir(settings.dbt_project_dir)
    if source == "cache":
        print(f"dbt manifest: up to date for target {target.dbt_target} ({where})")
    else:
        print(f"dbt manifest: parsed for target {target.dbt_target} in {seconds:.1f}s ({where})")


if __name__ == "__main__":
    main()
