"""docker-compose.yml and the Dockerfile agree with the code and are secure by default
(Docker cannot pull base images here, so the images are not built in CI): every command
and setting points at something that exists, and each hardening the README promises is
checked as a value."""

from __future__ import annotations

import re

import pytest
import yaml

from flows.core.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.unit

COMPOSE_TEXT = (PROJECT_ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
PREFECT_YAML = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text()
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# ${NAME:-default} / ${NAME:?message} / ${NAME}
INTERPOLATED = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def environment(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def test_the_four_services_and_their_order() -> None:
    assert set(SERVICES) == {"postgres", "prefect-server", "worker", "app"}
    assert SERVICES["prefect-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["worker"]["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    assert "healthcheck" in SERVICES["postgres"] and "healthcheck" in SERVICES["prefect-server"]


def test_the_worker_deploys_prefect_yaml_and_runs_it_on_the_warm_worker() -> None:
    command = " ".join(SERVICES["worker"]["command"])
    (pool,) = {d["work_pool"]["name"] for d in PREFECT_YAML["deployments"]}
    assert f"work-pool create {pool} --type cryptolytics" in command  # our warm worker type
    assert "deploy --all" in command and f"worker start --pool {pool}" in command
    assert environment("worker")["PREFECT_API_URL"] == "http://prefect-server:4200/api"


def test_ports_listen_on_loopback_unless_the_operator_opts_in() -> None:
    published = [p for s in SERVICES.values() for p in s.get("ports", [])]
    assert sorted(published) == [
        "${CRYPTOLYTICS_BIND_ADDRESS:-127.0.0.1}:4200:4200",
        "${CRYPTOLYTICS_BIND_ADDRESS:-127.0.0.1}:8501:8501",
    ]
    assert "ports" not in SERVICES["postgres"] and "ports" not in SERVICES["worker"]


def test_the_prefect_api_requires_its_auth_string() -> None:
    required = "${PREFECT_AUTH_STRING:?set PREFECT_AUTH_STRING in .env}"
    assert environment("prefect-server")["PREFECT_SERVER_API_AUTH_STRING"] == required
    assert environment("worker")["PREFECT_API_AUTH_STRING"] == required
    assert not any(k.startswith("PREFECT_") for k in environment("app"))  # needs no Prefect


def test_each_service_gets_only_its_variables() -> None:
    for name, service in SERVICES.items():
        assert "env_file" not in service, name  # no service gets the whole .env
    app = " ".join(f"{k}={v}" for k, v in environment("app").items())
    for secret in ("COINCAP_API_KEY", "POSTGRES_PASSWORD", "AUTH_STRING", "WEBHOOK", "DATABASE"):
        assert secret not in app, secret
    assert "POSTGRES_PASSWORD" not in " ".join(environment("worker").values())
    database = environment("prefect-server")
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in database  # no password in a URL
    assert database["PREFECT_SERVER_DATABASE_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "://" not in " ".join(database.values()).replace("http://127.0.0.1:4200/api", "")


def test_settings_in_compose_are_real_settings_with_the_codes_defaults() -> None:
    fields = Settings.model_fields
    for name in ("worker", "app"):
        for key, value in environment(name).items():
            if not key.startswith("CRYPTOLYTICS_"):
                continue
            field = key.removeprefix("CRYPTOLYTICS_").lower()
            assert field in fields, (name, key)
            match = INTERPOLATED.fullmatch(value)
            if match is None:  # a fixed path inside the containers
                assert value.startswith("/"), (name, key, value)
                continue
            assert match[1] == key, (name, key)  # the operator's .env uses the same name
            default = fields[field].default
            expected = "" if default is None else str(default)
            if field == "lake_url":
                expected = "/data/lake"  # in the data volume, not the checkout
            assert match[3] == expected, (name, key, match[3], expected)


def test_the_app_reads_the_serving_copies_read_only() -> None:
    (mount,) = SERVICES["app"]["volumes"]
    assert mount == {"type": "volume", "source": "serving", "target": "/serving", "read_only": True}
    assert environment("app")["CRYPTOLYTICS_SERVING_DIR"] == "/serving"
    assert "serving:/serving" in SERVICES["worker"]["volumes"]
    assert environment("worker")["CRYPTOLYTICS_SERVING_DIR"] == "/serving"


def test_containers_are_locked_down() -> None:
    for name in ("prefect-server", "worker", "app"):
        service = SERVICES[name]
        assert service["read_only"] is True, name  # code and image are not writable
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["cap_drop"] == ["ALL"], name
        assert service["init"] is True, name  # signals reach the process; zombies reaped
    assert " exec prefect worker start" in " ".join(SERVICES["worker"]["command"])


def test_images_are_pinned_by_digest_and_packages_by_hash() -> None:
    assert DIGEST.search(SERVICES["postgres"]["image"])
    (base,) = re.findall(r"^FROM (\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert DIGEST.search(base), base
    assert "--require-hashes -r requirements.lock" in DOCKERFILE
    lock = (PROJECT_ROOT / "requirements.lock").read_text()
    pins = re.findall(r"^[A-Za-z0-9_.\-\[\]]+==\S+", lock, flags=re.MULTILINE)
    assert len(pins) > 100
    # every venv make creates is installed from hashes (uv itself, the tools, the emulator)
    for name in ("requirements.lock", "requirements-uv.lock", "requirements-tools.lock",
                 "requirements-emulators.lock"):  # fmt: skip
        text = (PROJECT_ROOT / name).read_text()
        for block in re.split(r"\n(?=[A-Za-z0-9])", text.strip()):
            if block.startswith("#"):
                continue
            assert "--hash=sha256:" in block, (name, block.splitlines()[0])


def test_the_image_has_what_the_services_run_and_code_is_not_the_users() -> None:
    copied = re.findall(r"^COPY (.+) \S+$", DOCKERFILE, flags=re.MULTILINE)
    sources = {source for line in copied for source in line.split()}
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), source
    assert {"flows", "blocks", "streamlit_app", "dbt", "prefect.yaml"} <= sources
    app = SERVICES["app"]["command"]
    assert (PROJECT_ROOT / app[app.index("run") + 1]).exists()
    assert "USER cryptolytics" in DOCKERFILE  # not root
    # the only folder given away whole is dbt's scratch (the parse saved at build, logs)
    assert re.findall(r"chown -R (.+)", DOCKERFILE) == ["cryptolytics /tmp/dbt"]
    assert "chown cryptolytics /app" not in DOCKERFILE
    chowned = re.search(r"chown cryptolytics ([^\\\n]+)", DOCKERFILE)
    assert chowned and set(chowned[1].split()) == {"/data", "/serving", "/prefect"}


def test_streamlit_is_configured_in_one_file_every_start_reads() -> None:
    """.streamlit/config.toml holds the app's server settings; `make app`, `make up`, the
    browser tests and the compose service start Streamlit from the project folder without
    repeating them (compose sets only its container's listen address)."""
    import tomllib

    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["headless"] is True and config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["showErrorDetails"] == "none"
    starts = {
        "Makefile": (PROJECT_ROOT / "Makefile").read_text(),
        "docker-compose.yml": " ".join(SERVICES["app"]["command"]),
        "flows/runtime/stack.py": (PROJECT_ROOT / "flows" / "runtime" / "stack.py").read_text(),
    }
    for where, text in starts.items():
        for flag in ("--server.headless", "--server.address", "--browser.", "--client."):
            assert flag not in text, f"{where} repeats {flag}"
    assert SERVICES["app"]["environment"]["STREAMLIT_SERVER_ADDRESS"] == "0.0.0.0"
    assert re.search(r"^COPY \.streamlit \./\.streamlit$", DOCKERFILE, flags=re.MULTILINE)


def test_the_image_parses_dbt_for_the_worker_compose_runs_by_default() -> None:
    """The manifest saved at build is keyed by the profile's environment: parsed with the
    worker's default paths, the first tick of a container loads it instead of parsing."""
    parse_step = r"(CRYPTOLYTICS_\w+=\S+ [^\n]*\\\n\s*python -m flows.runtime.dbt_manifest)"
    (parse,) = re.findall(parse_step, DOCKERFILE)
    built_with = dict(re.findall(r"(CRYPTOLYTICS_\w+)=(\S+)", parse))
    worker = environment("worker")
    for name, value in built_with.items():
        match = INTERPOLATED.fullmatch(worker[name])
        assert (match.group(3) if match else worker[name]) == value, name
    assert "DBT_TARGET_PATH=/tmp/dbt/target" in DOCKERFILE  # where the cache is looked for
    assert "requirements-uv.lock" in DOCKERFILE and "uv pip install --system" in DOCKERFILE
