"""The chart renders with Helm's engine, lints clean and every object is valid Kubernetes, for every variation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from typing import Any

import helm_python as helm
import pytest
from pydantic import BaseModel

from bot.settings import BotSettings
from tests.deploy.chart import (
    CHART_DIR,
    CRD_KINDS,
    FULLNAME,
    KUBE_VERSIONS,
    NAMESPACE,
    REPO,
    VARIATIONS,
    container_env,
    containers,
    find,
    kinds,
    render,
    render_files,
    validate,
)

# --------------------------------------------------------------------------- render, lint, validate


@pytest.mark.parametrize("variation", sorted(VARIATIONS))
def test_every_rendered_object_is_valid_kubernetes(variation: str) -> None:
    objects = render(VARIATIONS[variation])
    assert objects, "the chart rendered nothing"
    unchecked = set()
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            unchecked.add((obj["apiVersion"], obj["kind"]))
            continue
        for version in KUBE_VERSIONS:
            validate(obj, version)
    expected_crds = {
        "cert-manager": {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")},
        "servicemonitor": {("monitoring.coreos.com/v1", "ServiceMonitor")},
    }
    assert unchecked == expected_crds.get(variation, set())


@pytest.mark.parametrize("variation", sorted(VARIATIONS))
def test_helm_lint_finds_no_errors_or_warnings(variation: str) -> None:
    report = helm.lint(CHART_DIR, VARIATIONS[variation], strict=True, namespace=NAMESPACE, kube_version="v1.27.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [] and report["errors"] == []


def test_every_namespaced_object_names_the_release_namespace() -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for variation in VARIATIONS.values():
        for obj in render(variation):
            if obj["kind"] in {"Role", "RoleBinding"} and obj["metadata"]["name"].endswith("-corefile"):
                # The one read outside the release: the cluster DNS's Corefile, kube-system/coredns.
                assert obj["metadata"].get("namespace") == "kube-system", obj["metadata"]["name"]
            elif obj["kind"] not in cluster_scoped:
                assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


# ------------------------------------------------------------------------------------ values schema


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"bot": {"mode": "websocket"}}, "/bot/mode"),
        ({"bot": {"replicas": 2}}, "replicas"),
        ({"agent": {"port": 70000}}, "/agent/port"),
        ({"agent": {"probes": {"mode": "exec"}}}, "/agent/probes/mode"),
        ({"slack": {"botToken": "xapp-wrong-kind"}}, "/slack/botToken"),
        ({"database": {"url": "mysql://db/kubereach"}}, "/database/url"),
        ({"bot": {"replicaCount": 2}}, "/database"),
    ],
)
def test_schema_refuses_wrong_values_and_names_the_key(values: dict[str, Any], complaint: str) -> None:
    with helm.Chart.load(CHART_DIR) as chart, pytest.raises(helm.HelmValuesError) as refused:
        chart.validate_schema(values)
    assert complaint in str(refused.value)


def test_several_replicas_without_a_shared_database_are_refused_even_past_the_schema() -> None:
    with pytest.raises(helm.HelmError) as refused:
        render_files({"bot": {"replicaCount": 2}})
    assert "database" in str(refused.value)


def test_an_ingress_in_socket_mode_is_refused() -> None:
    with pytest.raises(helm.HelmError) as refused:
        render_files({"bot": {"mode": "socket", "ingress": {"enabled": True, "host": "x.example.com"}}})
    assert "bot.mode=http" in str(refused.value)


# ----------------------------------------------------------------------------------------- the agent


def test_agent_daemonset_runs_on_every_node_in_the_host_namespaces() -> None:
    agent = find(render(), "DaemonSet", f"{FULLNAME}-agent")
    pod = agent["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["hostPID"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert {"operator": "Exists"} in pod["tolerations"]
    assert pod["automountServiceAccountToken"] is False
    labels = agent["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "kubereach-agent"


def test_agent_has_only_the_four_capabilities_read_only_root_and_no_privilege() -> None:
    agent = find(render(), "DaemonSet", f"{FULLNAME}-agent")
    (main,) = containers(agent)
    security = main["securityContext"]
    assert security["privileged"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "NET_RAW"]}
    assert main["resources"]["requests"] and main["resources"]["limits"]
    (init,) = containers(agent, init=True)
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert init["securityContext"]["readOnlyRootFilesystem"] is True


def test_privileged_agent_only_when_a_value_asks() -> None:
    agent = find(render({"agent": {"privileged": True}}), "DaemonSet", f"{FULLNAME}-agent")
    (main,) = containers(agent)
    assert main["securityContext"]["privileged"] is True


def test_host_mounts_are_read_only_and_netns_follows_new_namespaces() -> None:
    agent = find(render(), "DaemonSet", f"{FULLNAME}-agent")
    (main,) = containers(agent)
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in agent["spec"]["template"]["spec"]["volumes"]}
    host_mounts = {path: m for path, m in mounts.items() if "hostPath" in volumes[m["name"]]}
    assert set(host_mounts) == {"/var/run/netns", "/run/xtables.lock", "/sys/fs/bpf"}
    assert all(m["readOnly"] is True for m in host_mounts.values())
    assert host_mounts["/var/run/netns"]["mountPropagation"] == "HostToContainer"
    assert "agent-ca" not in {m["name"] for m in main["volumeMounts"]}, "the agent CA key is for the init container only"


def test_agent_probes_are_native_grpc_on_the_health_port_by_default() -> None:
    agent = find(render(), "DaemonSet", f"{FULLNAME}-agent")
    (main,) = containers(agent)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["grpc"] == {"port": 7444}
    assert main["args"][main["args"].index("--health-port") + 1] == "7444"


def test_tcp_probe_mode_needs_no_health_listener() -> None:
    agent = find(render({"agent": {"probes": {"mode": "tcp"}}}), "DaemonSet", f"{FULLNAME}-agent")
    (main,) = containers(agent)
    assert "--health-port" not in main["args"]
    assert main["livenessProbe"]["tcpSocket"] == {"port": 7443}


def test_network_policy_admits_only_the_bot_to_the_agent_port() -> None:
    objects = render()
    policy = find(objects, "NetworkPolicy", f"{FULLNAME}-agent")
    agent = find(objects, "DaemonSet", f"{FULLNAME}-agent")
    bot = find(objects, "Deployment", f"{FULLNAME}-bot")
    selected = policy["spec"]["podSelector"]["matchLabels"]
    assert selected.items() <= agent["spec"]["template"]["metadata"]["labels"].items()
    grpc_rules = [r for r in policy["spec"]["ingress"] if {"port": 7443, "protocol": "TCP"} in r["ports"]]
    assert len(grpc_rules) == 1
    (peer,) = grpc_rules[0]["from"]
    assert peer["podSelector"]["matchLabels"].items() <= bot["spec"]["template"]["metadata"]["labels"].items()
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": NAMESPACE}
    others = [r for r in policy["spec"]["ingress"] if r is not grpc_rules[0]]
    assert all(7443 not in [p["port"] for p in r["ports"]] for r in others)


def _run_agent_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = (
        "import sys\n"
        "from nodeagent.__main__ import parse_args, settings_from\n"
        "print(settings_from(parse_args(sys.argv[1:])).model_dump_json())\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False
    )


def _agent_command(values: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    agent = find(render(values), "DaemonSet", f"{FULLNAME}-agent")
    (main,) = containers(agent)
    args = [a.replace("$(NODE_NAME)", "node-1") for a in main["args"]]
    env = {"PATH": os.environ["PATH"]}
    env.update({name: item["value"] for name, item in container_env(main).items() if "value" in item})
    return args, env


def test_the_agent_accepts_the_command_line_the_chart_gives_it() -> None:
    args, env = _agent_command({"agent": {"probes": {"mode": "tcp"}}})
    done = _run_agent_cli(args, env)
    assert done.returncode == 0, done.stderr
    settings = json.loads(done.stdout)
    assert settings["node"] == "node-1"
    assert settings["listen"] == "0.0.0.0:7443"
    assert settings["tls_client_ca"] == "/etc/kubereach/client-ca/ca.crt"
    assert settings["max_workers"] == 8 and settings["grace_seconds"] == 5.0
    assert settings["insecure"] is False


@pytest.mark.parametrize(
    "values",
    [{}, {"agent": {"probes": {"mode": "tcp"}}, "bot": {"ops": {"enabled": True}}, "metrics": {"enabled": True}}],
    ids=["health", "metrics"],
)
def test_the_agent_accepts_the_health_and_metrics_flags(values: dict[str, Any]) -> None:
    args, env = _agent_command(values)
    done = _run_agent_cli(args, env)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------------------- the bot


def _known_setting(name: str) -> bool:
    """Whether `KUBEREACH_A__B` names a field of BotSettings (following nested models through `__`)."""
    model: type[BaseModel] | None = BotSettings
    for part in name.removeprefix("KUBEREACH_").lower().split("__"):
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        model = next(
            (c for c in (annotation, *typing.get_args(annotation)) if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    return True


@pytest.mark.parametrize("variation", sorted(VARIATIONS))
def test_every_bot_setting_the_chart_sets_is_one_the_bot_reads(variation: str) -> None:
    bot = find(render(VARIATIONS[variation]), "Deployment", f"{FULLNAME}-bot")
    (main,) = containers(bot)
    names = {n for n in container_env(main) if n.startswith("KUBEREACH_")}
    unknown = {n for n in names if not _known_setting(n)}
    assert unknown == set(), "BotSettings ignores unknown KUBEREACH_ variables: these would silently do nothing"


def _serve_parses(args: list[str]) -> None:
    """Parse `args` (after `serve`) with the real `kubereach serve` command, as click would before running it."""
    from bot.slack.serve import make_serve_command

    def parsing_only(settings: BotSettings, history: object) -> Any:
        raise AssertionError("the serve command must not run here")

    command = make_serve_command(parsing_only)
    with command.make_context("serve", list(args)) as context:
        assert context.command is command


@pytest.mark.parametrize("variation", ["socket-mode", "http-ingress"])
def test_the_bot_accepts_the_serve_command_line_the_chart_gives_it(variation: str) -> None:
    bot = find(render(VARIATIONS[variation]), "Deployment", f"{FULLNAME}-bot")
    args = next(containers(bot))["args"]
    assert args[0] == "serve"
    _serve_parses(args[1:])
    assert ("--socket-mode" in args) == (variation == "socket-mode")


def test_the_bot_gets_a_shutdown_grace_inside_the_pods_termination_grace_and_group_access() -> None:
    values = {"bot": {"terminationGracePeriodSeconds": 45, "usergroupNamespaces": {"SNETOPS": ["*"]}}}
    bot = find(render(values), "Deployment", f"{FULLNAME}-bot")
    (main,) = containers(bot)
    args = main["args"]
    _serve_parses(args[1:])
    assert args[args.index("--grace") + 1] == "35"
    assert bot["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert json.loads(env["KUBEREACH_USERGROUP_NAMESPACES"]) == {"SNETOPS": ["*"]}


def test_the_bot_accepts_the_ops_port_flag() -> None:
    bot = find(render({"bot": {"ops": {"enabled": True}}}), "Deployment", f"{FULLNAME}-bot")
    _serve_parses(next(containers(bot))["args"][1:])


def _bot_settings_from_chart(values: dict[str, Any]) -> dict[str, Any]:
    bot = find(render(values), "Deployment", f"{FULLNAME}-bot")
    (main,) = containers(bot)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    for name, item in container_env(main).items():
        if "value" in item:
            env[name] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[name] = f"{ref['name']}/{ref['key']}"  # stands for the Secret's value
    script = "from bot.settings import load_settings\nprint(load_settings(None).model_dump_json())\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    settings: dict[str, Any] = json.loads(done.stdout)
    return settings


def test_bot_settings_built_from_the_chart_find_the_agents_and_their_tls_files() -> None:
    settings = _bot_settings_from_chart({"clusterName": "prod-eu", "bot": {"channelNamespaces": {"C123": ["shop", "payments"]}}})
    agents = settings["agents"]
    assert agents["discovery"] == "daemonset"
    assert agents["namespace"] == NAMESPACE
    assert agents["label_selector"] == "app.kubernetes.io/name=kubereach-agent,app.kubernetes.io/instance=kr"
    assert agents["port"] == 7443
    assert agents["tls"] == {
        "ca": "/etc/kubereach/agent-ca/ca.crt",
        "cert": "/etc/kubereach/bot-tls/tls.crt",
        "key": "/etc/kubereach/bot-tls/tls.key",
    }
    assert agents["insecure"] is False
    assert settings["cluster"] == "prod-eu"
    assert settings["kubeconfig"] is None, "in the cluster the bot uses its service account"
    assert settings["channel_namespaces"] == {"C123": ["shop", "payments"]}


def test_agent_label_selector_given_to_the_bot_matches_the_agent_pods() -> None:
    objects = render()
    bot = find(objects, "Deployment", f"{FULLNAME}-bot")
    selector = container_env(next(containers(bot)))["KUBEREACH_AGENTS__LABEL_SELECTOR"]["value"]
    wanted = dict(term.split("=", 1) for term in selector.split(","))
    pod_labels = find(objects, "DaemonSet", f"{FULLNAME}-agent")["spec"]["template"]["metadata"]["labels"]
    assert wanted.items() <= pod_labels.items()


def test_socket_mode_gets_the_app_token_and_no_slack_endpoint() -> None:
    objects = render(VARIATIONS["socket-mode"])
    bot = find(objects, "Deployment", f"{FULLNAME}-bot")
    env = container_env(next(containers(bot)))
    assert env["KUBEREACH_SLACK_APP_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": f"{FULLNAME}-slack", "key": "app-token"}
    assert "KUBEREACH_SLACK_SIGNING_SECRET" not in env
    assert not [o for o in objects if o["kind"] in {"Ingress", "Service"}], "Slack never calls the bot in Socket Mode"
    secret = find(objects, "Secret", f"{FULLNAME}-slack")
    assert secret["stringData"]["app-token"] == "xapp-1"


def test_http_mode_routes_the_ingress_to_the_slack_endpoint() -> None:
    objects = render(VARIATIONS["http-ingress"])
    bot = find(objects, "Deployment", f"{FULLNAME}-bot")
    main = next(containers(bot))
    env = container_env(main)
    assert "KUBEREACH_SLACK_SIGNING_SECRET" in env and "KUBEREACH_SLACK_APP_TOKEN" not in env
    ingress = find(objects, "Ingress", f"{FULLNAME}-bot")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "kubereach.example.com"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/slack/events"
    backend = path["backend"]["service"]
    service = find(objects, "Service", backend["name"])
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == backend["port"]["name"]]
    assert port["targetPort"] in {p["name"] for p in main["ports"]}
    assert ingress["spec"]["tls"] == [{"secretName": "kubereach-tls", "hosts": ["kubereach.example.com"]}]


def test_existing_secrets_are_referenced_and_not_created() -> None:
    objects = render(VARIATIONS["existing-secrets"])
    secrets = {name for kind, name in kinds(objects) if kind == "Secret"}
    assert f"{FULLNAME}-slack" not in secrets and f"{FULLNAME}-database" not in secrets
    bot = find(objects, "Deployment", f"{FULLNAME}-bot")
    assert bot["spec"]["replicas"] == 3
    env = container_env(next(containers(bot)))
    assert env["KUBEREACH_SLACK_BOT_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "team-slack"
    assert env["KUBEREACH_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "team-postgres", "key": "dsn"}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "team-postgres", "key": "dsn"}
    budget = find(objects, "PodDisruptionBudget", f"{FULLNAME}-bot")
    assert budget["spec"]["minAvailable"] == 1
    assert "strategy" not in bot["spec"], "a shared database allows rolling updates"


def test_default_install_keeps_sqlite_in_one_pod_with_recreate_updates() -> None:
    objects = render()
    bot = find(objects, "Deployment", f"{FULLNAME}-bot")
    assert bot["spec"]["replicas"] == 1
    assert bot["spec"]["strategy"] == {"type": "Recreate"}
    env = container_env(next(containers(bot)))
    assert env["KUBEREACH_DATABASE_URL"]["value"] == "sqlite:////var/lib/kubereach/history.db"
    assert not [o for o in objects if o["kind"] == "PodDisruptionBudget"]


def test_bot_runs_as_non_root_with_a_read_only_root() -> None:
    bot = find(render(), "Deployment", f"{FULLNAME}-bot")
    pod = bot["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    main = next(containers(bot))
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    bot_tls = next(v for v in pod["volumes"] if v["name"] == "agent-ca")
    assert bot_tls["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], "the bot never holds the agent CA key"


# ------------------------------------------------------------------------------------ cert-manager


def test_cert_manager_mode_issues_cas_and_the_bot_certificate_into_the_same_secret_names() -> None:
    objects = render(VARIATIONS["cert-manager"])
    assert not [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith(("-ca", "-tls"))]
    certificates = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Certificate"}
    assert set(certificates) == {f"{FULLNAME}-agent-ca", f"{FULLNAME}-client-ca", f"{FULLNAME}-bot-tls"}
    assert certificates[f"{FULLNAME}-agent-ca"]["isCA"] is True
    assert certificates[f"{FULLNAME}-agent-ca"]["privateKey"]["rotationPolicy"] == "Never"
    bot_cert = certificates[f"{FULLNAME}-bot-tls"]
    assert "client auth" in bot_cert["usages"] and "server auth" not in bot_cert["usages"]
    issuers = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Issuer"}
    assert issuers[bot_cert["issuerRef"]["name"]] == {"ca": {"secretName": f"{FULLNAME}-client-ca"}}
    for spec in certificates.values():
        assert spec["issuerRef"]["name"] in issuers
    pod_secrets = set()
    for workload in (find(objects, "DaemonSet", f"{FULLNAME}-agent"), find(objects, "Deployment", f"{FULLNAME}-bot")):
        pod_secrets |= {v["secret"]["secretName"] for v in workload["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    assert pod_secrets == {spec["secretName"] for spec in certificates.values()}


def test_agents_can_take_the_client_ca_from_a_configmap_under_cert_manager() -> None:
    values = {"tls": {"certManager": {"enabled": True, "clientCaConfigMap": "kubereach-client-ca-bundle"}}}
    agent = find(render(values), "DaemonSet", f"{FULLNAME}-agent")
    volume = next(v for v in agent["spec"]["template"]["spec"]["volumes"] if v["name"] == "client-ca")
    assert volume == {
        "name": "client-ca",
        "configMap": {"name": "kubereach-client-ca-bundle", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
    }


# ----------------------------------------------------------------------------------------- metrics


def test_service_monitors_select_services_with_the_scraped_ports() -> None:
    objects = render(VARIATIONS["servicemonitor"])
    services = [o for o in objects if o["kind"] == "Service"]
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {f"{FULLNAME}-bot", f"{FULLNAME}-agent"}
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "prom"
        wanted = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        pods = [o for o in objects if o["kind"] in {"Deployment", "DaemonSet"}]
        (workload,) = [
            w for w in pods if service["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        target = next(p["targetPort"] for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
        assert target in {p["name"] for p in next(containers(workload))["ports"]}


def test_no_metrics_objects_unless_asked() -> None:
    objects = render()
    assert not [o for o in objects if o["kind"] == "ServiceMonitor" or o["metadata"]["name"].endswith("-agent-metrics")]
