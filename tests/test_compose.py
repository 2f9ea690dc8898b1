"""docker-compose.yml and the Dockerfile agree with the code (Docker cannot pull base images
here, so the images are not built in CI): every service's command and setting points at
something that exists."""

from __future__ import annotations

import re

import yaml

from flows.settings import PROJECT_ROOT, Settings

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
PREFECT_YAML = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text()


def test_the_four_services_and_their_order() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "prefect-server", "worker", "app"}
    assert services["prefect-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["prefect-server"]
    assert services["prefect-server"]["ports"] == ["4200:4200"]
    assert services["app"]["ports"] == ["8501:8501"]


def test_the_worker_deploys_prefect_yaml_to_its_own_pool() -> None:
    command = " ".join(COMPOSE["services"]["worker"]["command"])
    pools = {d["work_pool"]["name"] for d in PREFECT_YAML["deployments"]}
    (pool,) = pools
    assert f"work-pool create {pool} --type cryptolytics" in command  # the warm worker
    assert "deploy --all" in command and f"worker start --pool {pool}" in command
    api = COMPOSE["services"]["worker"]["environment"]["PREFECT_API_URL"]
    assert api == "http://prefect-server:4200/api"


def test_settings_in_compose_are_real_settings_and_secrets_come_from_env() -> None:
    fields = {f"CRYPTOLYTICS_{name.upper()}" for name in Settings.model_fields}
    for name, service in COMPOSE["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("CRYPTOLYTICS_"):
                assert key in fields, (name, key)
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text  # no default password: compose refuses to start
    assert "CRYPTOLYTICS_COINCAP_API_KEY" not in text  # from .env only
    database_url = COMPOSE["services"]["prefect-server"]["environment"][
        "PREFECT_API_DATABASE_CONNECTION_URL"
    ]
    assert database_url.startswith("postgresql+asyncpg://")
    assert "asyncpg==" in (PROJECT_ROOT / "requirements.lock").read_text()


def test_the_image_has_what_the_services_run() -> None:
    copied = re.findall(r"^COPY (.+) \S+$", DOCKERFILE, flags=re.MULTILINE)
    sources = {source for line in copied for source in line.split()}
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), source
    assert {"flows", "blocks", "streamlit_app", "dbt", "prefect.yaml"} <= sources
    app = COMPOSE["services"]["app"]["command"]
    assert (PROJECT_ROOT / app[app.index("run") + 1]).exists()
    assert "USER " in DOCKERFILE  # not root
