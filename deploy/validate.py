#!/usr/bin/env python3
"""Offline validation of everything deployable in this repository (`make validate-deploy`).

- Kubernetes objects in deploy/kubernetes/*.yaml and deploy/istio/*.yaml: core kinds against
  the Kubernetes schemas bundled in PyPI `kubernetes-validate` (strict: unknown fields fail).
  Istio kinds are parsed and their policy checked below; their schemas are not bundled.
- Every Envoy configuration shipped — the sample (envoy/envoy.yaml with envoy/policy-filter.yaml
  or envoy/policy-filter-native.yaml rendered), the gateway (envoy/gateway.yaml), each with both
  builds of the filter, the approval service's jwt_authn front (envoy/approvals-jwt.yaml, with an
  example JWKS), and each `envoy.yaml` in a ConfigMap — with `envoy --mode validate` and
  the built .wasm and native module. Filters delivered by ECDS are also inlined into the listener
  for a second validation, so the filter's own configuration is checked by Envoy too (Envoy loads
  the native module and runs its configuration hook).
- Every policy embedded in a manifest with `mcp-policy check` (the filter's own loader).

Usage: validate.py ENVOY WASM NATIVE MCP_POLICY_BIN KUBERNETES_VERSION
"""

import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import kubernetes_validate
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISTIO_GROUPS = ("networking.istio.io/", "extensions.istio.io/", "security.istio.io/")


def documents(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def envoy_validate(envoy, config_path, label):
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", config_path, "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        return [f"{label}: envoy --mode validate failed:\n{result.stdout}{result.stderr}"]
    print(f"ok  {label}: envoy --mode validate")
    return []


def policy_check(policy_bin, policy_text, label):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(policy_text)
        path = f.name
    try:
        result = subprocess.run([policy_bin, "check", path], capture_output=True, text=True)
    finally:
        os.unlink(path)
    if result.returncode != 0:
        return [f"{label}: policy refused: {result.stderr.strip()}"]
    print(f"ok  {label}: {result.stdout.strip().split(': ', 1)[-1]}")
    return []


def policies_in_ecds(resources_doc):
    """(name, policy text) of each Wasm filter in an ECDS resources document."""
    found = []
    for resource in resources_doc.get("resources", []):
        config = resource.get("typed_config", {}).get("config", {})
        value = config.get("configuration", {}).get("value")
        if value is not None:
            found.append((resource.get("name", "?"), value))
    return found


def inline_ecds(envoy_config, ecds_resources):
    """The same Envoy configuration with each ECDS-delivered HTTP filter replaced by its resource,
    so that `--mode validate` checks the filter's configuration too."""
    by_name = {r["name"]: r["typed_config"] for r in ecds_resources.get("resources", [])}
    text = json.dumps(envoy_config)
    config = json.loads(text)
    for listener in config.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                hcm = network_filter.get("typed_config", {})
                for http_filter in hcm.get("http_filters", []):
                    if "config_discovery" in http_filter:
                        typed = by_name.get(http_filter["name"])
                        if typed is None:
                            continue
                        del http_filter["config_discovery"]
                        http_filter.pop("disabled", None)
                        http_filter["typed_config"] = typed
    return config


def point_at_local_files(text, wasm, config_dir):
    """Paths inside the pod, mapped to this machine: the .wasm and the mounted ConfigMap dir."""
    text = text.replace("/etc/mcp-policy-filter/plugin.wasm", wasm)
    return text.replace("/etc/mcp-policy", config_dir)


def validate_manifests(envoy, wasm, policy_bin, k8s_version):
    problems = []
    paths = sorted(glob.glob(os.path.join(REPO, "deploy/kubernetes/*.yaml")))
    paths += sorted(glob.glob(os.path.join(REPO, "deploy/istio/*.yaml")))
    for path in paths:
        rel = os.path.relpath(path, REPO)
        docs = documents(path)
        config_maps = {}
        for doc in docs:
            kind, api = doc.get("kind"), doc.get("apiVersion", "")
            name = doc.get("metadata", {}).get("name", "?")
            label = f"{rel}: {kind}/{name}"
            if api.startswith(ISTIO_GROUPS):
                print(f"ok  {label}: parsed (Istio kinds are not in the Kubernetes schemas)")
            else:
                try:
                    kubernetes_validate.validate(doc, k8s_version, strict=True)
                    print(f"ok  {label}: valid against Kubernetes {k8s_version}")
                except kubernetes_validate.ValidationError as e:
                    problems.append(f"{label}: {e.message} at {list(e.path)}")
                    continue
            if kind == "ConfigMap":
                config_maps[name] = doc.get("data", {})
            plugin_config = doc.get("spec", {}).get("pluginConfig")
            if kind == "WasmPlugin" and plugin_config is not None:
                problems += policy_check(policy_bin, json.dumps(plugin_config), label)
            for patch in doc.get("spec", {}).get("configPatches", []) if kind == "EnvoyFilter" else []:
                config = (patch.get("patch", {}).get("value", {}).get("typed_config", {})
                          .get("config", {}))
                value = config.get("configuration", {}).get("value")
                if value is not None:
                    problems += policy_check(policy_bin, value, f"{label} (patch policy)")
                    if not config.get("allow_on_headers_stop_iteration"):
                        problems.append(f"{label}: the Wasm filter lacks allow_on_headers_stop_iteration: true")
                    with tempfile.TemporaryDirectory() as tmp:
                        config_path = os.path.join(tmp, "envoy.json")
                        with open(config_path, "w") as f:
                            json.dump(minimal_envoy_with(patch["patch"]["value"]["typed_config"], wasm), f)
                        problems += envoy_validate(envoy, config_path, f"{label}: its Wasm filter configuration")
        # An Envoy configuration in a ConfigMap, with the ECDS files of the pod's other ConfigMaps.
        for cm_name, data in config_maps.items():
            if "envoy.yaml" not in data:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                ecds = {"resources": []}
                for other in config_maps.values():
                    for key, value in other.items():
                        if key == "envoy.yaml":
                            continue
                        local = point_at_local_files(value, wasm, tmp)
                        with open(os.path.join(tmp, key), "w") as f:
                            f.write(local)
                        resources = yaml.safe_load(local) or {}
                        for filter_name, policy in policies_in_ecds(resources):
                            problems += policy_check(policy_bin, policy, f"{rel}: ConfigMap/{cm_name} filter {filter_name}")
                        ecds["resources"] += resources.get("resources", [])
                envoy_text = point_at_local_files(data["envoy.yaml"], wasm, tmp)
                envoy_path = os.path.join(tmp, "envoy.yaml")
                with open(envoy_path, "w") as f:
                    f.write(envoy_text)
                problems += envoy_validate(envoy, envoy_path, f"{rel}: ConfigMap/{cm_name} envoy.yaml")
                if ecds["resources"]:
                    inlined = os.path.join(tmp, "envoy-inlined.yaml")
                    with open(inlined, "w") as f:
                        json.dump(inline_ecds(yaml.safe_load(envoy_text), ecds), f)
                    problems += envoy_validate(envoy, inlined, f"{rel}: ConfigMap/{cm_name} envoy.yaml with the filter inlined")
    return problems


def minimal_envoy_with(http_filter_typed_config, wasm):
    """A one-listener Envoy configuration running this Wasm filter configuration from the built
    .wasm: what istio-agent hands Envoy once it has fetched the module."""
    typed = json.loads(json.dumps(http_filter_typed_config))
    typed["config"]["vm_config"]["code"] = {"local": {"filename": wasm}}
    return {
        "static_resources": {
            "listeners": [{
                "name": "check",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "check",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
                        "http_filters": [
                            {"name": "mcp-policy", "typed_config": typed},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                        ],
                    },
                }]}],
            }],
        },
    }


def render(template, values):
    code = "\n".join(line.split("#", 1)[0] for line in template.splitlines())
    missing = set(re.findall(r"\$\{([A-Z_]+)\}", code)) - set(values)
    if missing:
        raise SystemExit(f"template needs values for {sorted(missing)}")
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


# Each build of the filter: its per-server template and the filter state key of its audit record.
BUILDS = {
    "wasm": ("envoy/policy-filter.yaml", "wasm.mcp_policy_audit"),
    "native": ("envoy/policy-filter-native.yaml", "mcp_policy_audit"),
}


def filter_resource(build, artifact, server, policy):
    """The build's filter for `server`, as its template renders it (an ECDS resource)."""
    with open(os.path.join(REPO, BUILDS[build][0])) as f:
        template = f.read()
    rendered = render(template, {"SERVER": server, "FILTER_PATH": artifact, "POLICY": json.dumps(policy)})
    (resource,) = yaml.safe_load(rendered)["resources"]
    return rendered, resource


def validate_sample(envoy, build, artifact, policy_bin):
    """envoy/envoy.yaml and the build's per-server filter, rendered as `make run` renders them."""
    problems = []
    with open(os.path.join(REPO, "envoy/envoy.yaml")) as f:
        template = f.read()
    label = f"envoy/envoy.yaml (sample, {build})"
    with tempfile.TemporaryDirectory() as tmp:
        filters = {}
        for server in ("wechat", "notify"):
            with open(os.path.join(REPO, "envoy/policies", f"{server}.json")) as f:
                policy = f.read()
            problems += policy_check(policy_bin, policy, f"envoy/policies/{server}.json")
            rendered, resource = filter_resource(build, artifact, server, policy)
            with open(os.path.join(tmp, f"{server}.yaml"), "w") as f:
                f.write(rendered)
            filters[resource["name"]] = resource
        config = render(template, {"ADMIN_PORT": "0", "LISTENER_PORT": "0", "WECHAT_PORT": "1",
                                   "NOTIFY_PORT": "2", "APPROVAL_PORT": "3", "FILTER_CONFIG_DIR": tmp,
                                   "AUDIT_KEY": BUILDS[build][1],
                                   "ACCESS_LOG": os.path.join(tmp, "access.log")})
        path = os.path.join(tmp, "envoy.yaml")
        with open(path, "w") as f:
            f.write(config)
        problems += envoy_validate(envoy, path, label)
        inlined = os.path.join(tmp, "envoy-inlined.json")
        with open(inlined, "w") as f:
            json.dump(inline_ecds(yaml.safe_load(config), {"resources": list(filters.values())}), f)
        problems += envoy_validate(envoy, inlined, f"{label} with the filters inlined")
    return problems


GATEWAY_POLICY = """{"version": "1", "default": "deny",
 "rate_limit_services": {"shared": {"cluster": "ratelimit"}}, "rate_limit_service": "shared",
 "tools": {"wechat_mass_send": {"limits": [
   {"counter": "wechat_mass_send_rate", "window": "minute", "max": 30, "scope": "grant"}]}}}"""


def validate_gateway(envoy, build, artifact, policy_bin):
    """envoy/gateway.yaml (one replica of a gateway sharing limits), rendered as the tests do."""
    problems = policy_check(policy_bin, GATEWAY_POLICY, "envoy/gateway.yaml policy")
    with open(os.path.join(REPO, "envoy/gateway.yaml")) as f:
        template = f.read()
    _, resource = filter_resource(build, artifact, "wechat", GATEWAY_POLICY)
    entry = "- " + json.dumps({"name": resource["name"], "typed_config": resource["typed_config"]})
    with tempfile.TemporaryDirectory() as tmp:
        config = render(template, {"ADMIN_PORT": "0", "LISTENER_PORT": "0", "UPSTREAM_PORT": "1",
                                   "RATELIMIT_PORT": "2", "POLICY_FILTER": entry,
                                   "AUDIT_KEY": BUILDS[build][1],
                                   "ACCESS_LOG": os.path.join(tmp, "access.log")})
        path = os.path.join(tmp, "gateway.yaml")
        with open(path, "w") as f:
            f.write(config)
        problems += envoy_validate(envoy, path, f"envoy/gateway.yaml ({build})")
    return problems


# A public key only, for envoy/approvals-jwt.yaml: Envoy reads and parses the JWKS at start.
EXAMPLE_JWKS = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "example", "alg": "ES256", "use": "sig",
                          "x": "T7E0rbF4w85VYlGFt7g981NW7mB7tLfdNTQ3-4euOtU",
                          "y": "HIDz7pKyIf9WmVxJKf6FSHIvRI3Dsuz7P5zLg2LPtAI"}]}


def validate_approvals_jwt(envoy):
    """envoy/approvals-jwt.yaml, rendered as `sample-deployment --approvers-from-jwt` renders it."""
    with open(os.path.join(REPO, "envoy/approvals-jwt.yaml")) as f:
        template = f.read()
    with tempfile.TemporaryDirectory() as tmp:
        jwks = os.path.join(tmp, "jwks.json")
        with open(jwks, "w") as f:
            json.dump(EXAMPLE_JWKS, f)
        config = render(template, {"ADMIN_PORT": "0", "APPROVALS_GATEWAY_PORT": "0", "APPROVAL_PORT": "1",
                                   "JWT_ISSUER": "https://issuer.example", "JWT_AUDIENCE": "approvals",
                                   "APPROVER_JWKS": jwks})
        path = os.path.join(tmp, "approvals-jwt.yaml")
        with open(path, "w") as f:
            f.write(config)
        return envoy_validate(envoy, path, "envoy/approvals-jwt.yaml")


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    envoy, wasm, native, policy_bin, k8s_version = sys.argv[1:]
    wasm, native = os.path.abspath(wasm), os.path.abspath(native)
    problems = []
    for build, artifact in (("wasm", wasm), ("native", native)):
        problems += validate_sample(envoy, build, artifact, policy_bin)
        problems += validate_gateway(envoy, build, artifact, policy_bin)
    problems += validate_approvals_jwt(envoy)
    problems += validate_manifests(envoy, wasm, policy_bin, k8s_version)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
