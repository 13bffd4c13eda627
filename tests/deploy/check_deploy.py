"""Checks the packaging (docker/, deploy/k8s/, deploy/grafana/) against the daemon it packages.

    /usr/bin/python3 tests/deploy/check_deploy.py --moeserve build/src/server/moeserve \\
        --source-dir .

ctest runs it as `deploy_manifests` (label unit). Standard library and python3-yaml only. It
runs `moeserve serve --help` for the flags and their defaults, then starts the daemon with the
Deployment's own arguments and config file (bundled model, CPU, free 127.0.0.1 ports) and checks:

  Dockerfiles   COPY/ADD sources exist in the repository and survive .dockerignore (the bundled
                model with all its files), `scripts/...` they run exist and are executable, every cmake -D
                variable is one the build defines, the binary's path matches the build target,
                the bundled model lands where the daemon looks for it, ENTRYPOINT/CMD flags
                exist, EXPOSE and HEALTHCHECK use the daemon's ports and /health, STOPSIGNAL is
                SIGTERM, USER is a numeric non-root uid.
  Kubernetes    every manifest parses and is listed in kustomization.yaml (or is *.example.yaml);
                container args are `serve` flags; container ports equal the ports the arguments
                and config file give; probes use /health on the http port, and a live daemon
                answers them 200 without an API key; the startup budget covers a slow model
                load; terminationGracePeriodSeconds > --shutdown-timeout-s + preStop sleep, and
                liveness outlasts the drain; the Service, PDB and ServiceMonitor select the pods
                and name real ports; the API key Secret matches secret.example.yaml and the key
                from $MOESERVE_API_KEY is enforced; the ConfigMap's config is a configs/*.json
                file verbatim (so tests/unit/serve_config_test.cc validates it) and starts the
                daemon; SIGTERM then exits 0 within the shutdown timeout.
  Grafana       every metric and label the dashboard and ServiceMonitor use is in the live
                /metrics output; panel ids are unique; every $variable is defined.

Exits 0 when all checks pass, 1 with one line per failure otherwise, 77 (ctest: skipped) without
python3-yaml.
"""

import argparse
import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

try:
    import yaml
except ImportError:
    print("check_deploy.py: SKIPPED: python3-yaml is not installed (apt-get install python3-yaml)")
    sys.exit(77)

# Labels Prometheus adds to every scraped series (target labels); not in /metrics itself.
TARGET_LABELS = {"instance", "job", "namespace", "pod", "service", "container", "endpoint"}
# Grafana's built-in variables.
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}

# The model the live daemon serves, relative to the source directory: the bundled one, which the
# images ship as their default.
TINY_MODEL = "models/tiny"
STARTUP_BUDGET_S = 600  # startupProbe: time a large model may take to load (docs/deployment.md)


class Checker:
    def __init__(self):
        self.failures = []
        self.n_checks = 0

    def check(self, ok, message):
        self.n_checks += 1
        if not ok:
            self.failures.append(message)
        return ok


# ---- the daemon's flags -----------------------------------------------------------------------


def serve_help(moeserve):
    """(flags, defaults) from `moeserve serve --help`: every accepted `--flag` (both forms of
    `--[no-]name`) and each flag's "(default: X)" text, by flag name without dashes."""
    out = subprocess.run([moeserve, "serve", "--help"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    flags, defaults = set(), {}
    entries = []  # [name, text] with continuation lines joined
    for line in out.splitlines():
        m = re.match(r"^ {2}(--\[no-\]|--)([a-z][a-z0-9-]*)", line)
        if m:
            name = m.group(2)
            flags.add("--" + name)
            if m.group(1) == "--[no-]":
                flags.add("--no-" + name)
            entries.append([name, line])
        elif entries and line.startswith("    "):
            entries[-1][1] += " " + line.strip()
    for name, text in entries:
        d = re.search(r"\(default: ([^)]*)\)", text)
        if d:
            defaults[name] = d.group(1)
    return flags, defaults


def parse_flags(args):
    """`--name VALUE` / `--name=VALUE` / `--[no-]bool` arguments -> [(flag, value or None)]."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            out.append((a, None))  # a stray positional: reported by the caller
            i += 1
        elif "=" in a:
            name, value = a.split("=", 1)
            out.append((name, value))
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            out.append((a, args[i + 1]))
            i += 2
        else:
            out.append((a, None))
            i += 1
    return out


def strip_jsonc(text):
    """JSON with // and /* */ comments -> plain JSON text (strings left alone)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Settings:
    """Effective `serve` settings: flags (last wins) over the config file over the defaults."""

    def __init__(self, flag_values, config, defaults):
        self.flags = {}
        for name, value in flag_values:
            self.flags[name[2:]] = value
        self.config = config or {}
        self.defaults = defaults

    def get(self, name):
        if name in self.flags:
            return self.flags[name]
        key = name.replace("-", "_")
        if key in self.config:
            return self.config[key]
        return self.defaults.get(name)

    def number(self, name):
        return float(self.get(name))


# ---- Dockerfiles ------------------------------------------------------------------------------


def dockerfile_instructions(path):
    """[(INSTRUCTION, rest)] with continuation lines joined and comment lines dropped."""
    result, pending = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.lstrip().startswith("#"):
                continue  # comments, also inside continued instructions
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            line = pending + line
            pending = ""
            if line.strip():
                word, _, rest = line.strip().partition(" ")
                result.append((word.upper(), rest.strip()))
    return result


def dockerignore_patterns(source_dir):
    path = os.path.join(source_dir, ".dockerignore")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [l.strip().rstrip("/") for l in f if l.strip() and not l.startswith("#")]


def dockerignored(rel, patterns):
    """Whether .dockerignore leaves `rel` (or a directory above it) out of the context."""
    parts = rel.strip("/").split("/")
    prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    for pattern in patterns:
        if pattern.startswith("!"):
            continue  # this repository uses no exceptions
        for p in prefixes:
            if fnmatch.fnmatchcase(p, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatchcase(p.split("/")[-1], pattern[3:]):
                return True
    return False


def cmake_variables(source_dir):
    """Cache variables and options our CMakeLists define."""
    names = set()
    for path in glob.glob(os.path.join(source_dir, "**", "CMakeLists.txt"), recursive=True):
        if "/build" in path[len(source_dir):] or "node_modules" in path:
            continue
        with open(path) as f:
            text = f.read()
        names.update(re.findall(r"\boption\(\s*(\w+)", text))
        names.update(re.findall(r"\bset\(\s*(\w+)\s+[^)]*\bCACHE\b", text))
    return names


def exec_form(rest):
    """A JSON exec-form argument list (ENTRYPOINT ["a", "b"]), or None for the shell form."""
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def check_dockerfile(c, path, source_dir, flags, defaults, want_cuda):
    name = os.path.relpath(path, source_dir)
    ins = dockerfile_instructions(path)
    ignore = dockerignore_patterns(source_dir)
    kinds = [k for k, _ in ins]
    for k in ("ENTRYPOINT", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL", "USER"):
        c.check(k in kinds, f"{name}: no {k} instruction")

    # COPY/ADD from the build context.
    copies = []  # (sources, destination, from_stage)
    for k, rest in ins:
        if k not in ("COPY", "ADD"):
            continue
        words = shlex.split(rest)
        opts = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        stage = next((o.split("=", 1)[1] for o in opts if o.startswith("--from=")), None)
        copies.append((paths[:-1], paths[-1], stage))
        if stage is not None:
            continue
        for src in paths[:-1]:
            rel = os.path.normpath(src).lstrip("/")
            if rel == ".":
                continue
            matches = glob.glob(os.path.join(source_dir, rel))
            c.check(matches, f"{name}: COPY/ADD source '{src}' does not exist in the repository")
            c.check(not dockerignored(rel, ignore),
                    f"{name}: COPY/ADD source '{src}' is excluded by .dockerignore")
        if "models/tiny" in [os.path.normpath(s) for s in paths[:-1]]:
            tiny = os.path.join(source_dir, "models/tiny")
            for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
                c.check(os.path.exists(os.path.join(tiny, f)),
                        f"{name}: models/tiny has no {f} (the daemon's default model needs it)")

    # Scripts the RUN lines call, and the install script in particular.
    runs = " ".join(rest for k, rest in ins if k == "RUN")
    scripts = set(re.findall(r"(?:^|[\s/])(scripts/[\w./-]+)", runs))
    c.check("scripts/install_deps.sh" in scripts, f"{name}: does not run scripts/install_deps.sh")
    for s in sorted(scripts):
        p = os.path.join(source_dir, s)
        c.check(os.path.isfile(p) and os.access(p, os.X_OK),
                f"{name}: runs {s}, which is not an executable file in the repository")

    # CMake: known variables, the CUDA switch, the target and where its binary lands.
    known = cmake_variables(source_dir)
    for var, value in re.findall(r"-D(\w+)=(\"[^\"]*\"|\S*)", runs):
        c.check(var in known or var.startswith("CMAKE_") or var == "BUILD_TESTING",
                f"{name}: cmake -D{var}: not a variable the build defines")
        if var == "MOESERVE_CUDA":
            want = "ON" if want_cuda else "OFF"
            c.check(value == want, f"{name}: -DMOESERVE_CUDA={value}, expected {want}")
    c.check("-DMOESERVE_CUDA=" in runs, f"{name}: does not set MOESERVE_CUDA")
    with open(os.path.join(source_dir, "src/server/CMakeLists.txt")) as f:
        server_cmake = f.read()
    for target in re.findall(r"--target\s+(\S+)", runs):
        c.check(re.search(r"\badd_executable\(\s*" + re.escape(target) + r"\b", server_cmake),
                f"{name}: --target {target}: not an executable of src/server/CMakeLists.txt")
    built = re.findall(r"/build/(src/server)/(\w+)\s", runs)
    c.check(built == [("src/server", "moeserve")],
            f"{name}: expected the binary from /build/src/server/moeserve, found {built}")

    # ENTRYPOINT: the binary, `serve`, and flags the daemon knows.
    entry = exec_form(next((r for k, r in ins if k == "ENTRYPOINT"), "")) or []
    c.check(entry, f"{name}: ENTRYPOINT must be in exec form (a JSON list)")
    binary = next((w for w in entry if w.endswith("/moeserve")), None)
    entry_flags = []
    if c.check(binary is not None, f"{name}: ENTRYPOINT does not run moeserve: {entry}"):
        after = entry[entry.index(binary) + 1:]
        c.check(after[:1] == ["serve"], f"{name}: ENTRYPOINT runs `moeserve {after[:1]}`, "
                "expected `moeserve serve`")
        entry_flags = parse_flags(after[1:])
        c.check(entry[0] == binary or "tini" in entry[0],
                f"{name}: ENTRYPOINT starts with {entry[0]}, neither moeserve nor tini")
        # The daemon's default model: <prefix>/share/moeserve/models/tiny for <prefix>/bin.
        prefix = os.path.dirname(os.path.dirname(binary))
        model_dest = os.path.join(prefix, "share/moeserve/models/tiny")
        c.check(any(d.rstrip("/") == binary for _, d, s in copies if s),
                f"{name}: no COPY --from=... puts the binary at {binary}")
        c.check(any(os.path.normpath(s) == "models/tiny" and d.rstrip("/") == model_dest
                    for srcs, d, stage in copies if stage is None for s in srcs),
                f"{name}: the bundled model must be copied to {model_dest}, where {binary} "
                "looks for its default model")
    cmd = exec_form(next((r for k, r in ins if k == "CMD"), "[]"))
    c.check(cmd is not None, f"{name}: CMD must be in exec form (a JSON list)")
    cmd_flags = parse_flags(cmd or [])
    for flag, _ in entry_flags + cmd_flags:
        c.check(flag in flags, f"{name}: '{flag}' is not a `moeserve serve` flag")
    settings = Settings(entry_flags + cmd_flags, None, defaults)
    c.check(settings.get("host") == "0.0.0.0",
            f"{name}: the daemon must listen on 0.0.0.0 in a container, not {settings.get('host')}")
    config = settings.flags.get("config")
    if config:
        config_dirs = [d.rstrip("/") for srcs, d, s in copies if s is None
                       for src in srcs if src.startswith("configs")]
        c.check(os.path.dirname(config) in config_dirs and
                os.path.exists(os.path.join(source_dir, "configs", os.path.basename(config))),
                f"{name}: CMD --config {config}: not a configs/*.json file copied into the image")
        with open(os.path.join(source_dir, "configs", os.path.basename(config))) as f:
            settings.config = json.loads(strip_jsonc(f.read()))

    ports = {str(int(settings.number("port"))), str(int(settings.number("grpc-port")))}
    exposed = set(" ".join(r for k, r in ins if k == "EXPOSE").split())
    c.check(exposed == ports, f"{name}: EXPOSE {sorted(exposed)}, the daemon uses {sorted(ports)}")
    health = next((r for k, r in ins if k == "HEALTHCHECK"), "")
    m = re.search(r"https?://(?:127\.0\.0\.1|localhost):(\d+)(/[\w/]*)", health)
    if c.check(m, f"{name}: HEALTHCHECK does not GET http://127.0.0.1:PORT/PATH: {health}"):
        c.check(m.group(1) == str(int(settings.number("port"))),
                f"{name}: HEALTHCHECK port {m.group(1)} is not the HTTP port")
        c.check(m.group(2) == "/health", f"{name}: HEALTHCHECK path {m.group(2)}, not /health")
    stop = next((r for k, r in ins if k == "STOPSIGNAL"), "")
    c.check(stop == "SIGTERM", f"{name}: STOPSIGNAL {stop!r}: the daemon drains on SIGTERM")
    user = next((r for k, r in reversed(ins) if k == "USER"), "")
    uid = user.split(":")[0]
    c.check(uid.isdigit() and int(uid) != 0,
            f"{name}: USER {user!r}: must be a numeric non-root uid (for runAsNonRoot)")
    return {"entry_flags": entry_flags, "uid": uid}


# ---- Kubernetes -------------------------------------------------------------------------------


def load_manifests(c, k8s_dir):
    docs = {}  # file -> [objects]
    for path in sorted(glob.glob(os.path.join(k8s_dir, "*.yaml"))):
        name = os.path.basename(path)
        try:
            with open(path) as f:
                docs[name] = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            c.check(False, f"deploy/k8s/{name}: invalid YAML: {e}")
    return docs


def one(c, objects, kind):
    found = [o for o in objects if o.get("kind") == kind]
    c.check(len(found) == 1, f"deploy/k8s: expected one {kind}, found {len(found)}")
    return found[0] if found else {}


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def prestop_seconds(container):
    pre = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    command = " ".join(pre.get("exec", {}).get("command", []))
    m = re.search(r"\bsleep\s+(\d+(?:\.\d+)?)\b", command)
    return float(m.group(1)) if m else 0.0


def probe_port_ok(probe, container, http_port):
    port = probe.get("httpGet", {}).get("port")
    if isinstance(port, int):
        return port == http_port
    return any(p.get("name") == port and p.get("containerPort") == http_port
               for p in container.get("ports", []))


def check_k8s(c, source_dir, docs, flags, defaults, image):
    k8s = "deploy/k8s"
    kust = docs.get("kustomization.yaml", [{}])[0]
    resources = kust.get("resources", [])
    for res in resources:
        c.check(res in docs, f"{k8s}/kustomization.yaml: resource {res} is not a YAML file here")
    for name in docs:
        c.check(name == "kustomization.yaml" or name in resources or
                name.endswith(".example.yaml"),
                f"{k8s}/{name}: not listed in kustomization.yaml (nor named *.example.yaml)")
    applied = [o for name in resources if name in docs for o in docs[name]]
    examples = [o for name in docs if name.endswith(".example.yaml") for o in docs[name]]

    dep = one(c, applied, "Deployment")
    svc = one(c, applied, "Service")
    pdb = one(c, applied, "PodDisruptionBudget")
    mon = one(c, applied, "ServiceMonitor")
    cm = one(c, applied, "ConfigMap")
    secret = one(c, examples, "Secret")
    pod = dep.get("spec", {}).get("template", {})
    pod_labels = pod.get("metadata", {}).get("labels", {})
    spec = pod.get("spec", {})
    containers = spec.get("containers", [])
    c.check(len(containers) == 1, f"{k8s}/deployment.yaml: expected one container")
    ctr = containers[0] if containers else {}
    c.check(selects(dep.get("spec", {}).get("selector", {}).get("matchLabels"), pod_labels),
            f"{k8s}/deployment.yaml: selector does not match the pod labels")

    # Arguments: appended to the image's ENTRYPOINT (`moeserve serve --host 0.0.0.0`).
    c.check("command" not in ctr, f"{k8s}/deployment.yaml: `command` would replace the image's "
            "ENTRYPOINT (tini, moeserve serve); pass flags in `args`")
    args = [str(a) for a in ctr.get("args", [])]
    arg_flags = parse_flags(args)
    for flag, _ in arg_flags:
        c.check(flag in flags, f"{k8s}/deployment.yaml: '{flag}' is not a `moeserve serve` flag")

    # The config file: a ConfigMap key under a configMap volume's mount.
    config_path = dict(arg_flags).get("--config")
    config_text, config = None, {}
    volumes = {v.get("name"): v for v in spec.get("volumes", [])}
    mounts = ctr.get("volumeMounts", [])
    if config_path:
        mount = next((m for m in mounts
                      if config_path.startswith(m["mountPath"].rstrip("/") + "/")), None)
        vol = volumes.get(mount["name"], {}) if mount else {}
        cm_name = vol.get("configMap", {}).get("name")
        key = config_path[len(mount["mountPath"].rstrip("/")) + 1:] if mount else None
        ok = c.check(cm_name == cm.get("metadata", {}).get("name") and
                     key in cm.get("data", {}),
                     f"{k8s}: --config {config_path} is not a key of the ConfigMap mounted there")
        if ok:
            config_text = cm["data"][key]
            shipped = [p for p in glob.glob(os.path.join(source_dir, "configs", "*.json"))
                       if open(p).read() == config_text]
            c.check(shipped, f"{k8s}/configmap.yaml: {key} is not a configs/*.json file verbatim "
                    "(copy the file, so that serve_config_test validates what is deployed)")
            try:
                config = json.loads(strip_jsonc(config_text))
            except ValueError as e:
                c.check(False, f"{k8s}/configmap.yaml: {key}: invalid JSON: {e}")
    settings = Settings(image["entry_flags"] + arg_flags, config, defaults)
    http_port = int(settings.number("port"))
    grpc_port = int(settings.number("grpc-port"))
    shutdown = settings.number("shutdown-timeout-s")

    ports = {p.get("name"): p.get("containerPort") for p in ctr.get("ports", [])}
    c.check(ports.get("http") == http_port,
            f"{k8s}/deployment.yaml: containerPort http = {ports.get('http')}, the daemon's HTTP "
            f"port is {http_port}")
    c.check(ports.get("grpc") == grpc_port,
            f"{k8s}/deployment.yaml: containerPort grpc = {ports.get('grpc')}, the daemon's gRPC "
            f"port is {grpc_port}")

    # Probes.
    probes = {}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = ctr.get(kind)
        if not c.check(probe, f"{k8s}/deployment.yaml: no {kind}"):
            continue
        path = probe.get("httpGet", {}).get("path")
        c.check(path == "/health", f"{k8s}/deployment.yaml: {kind} path {path}, not /health")
        c.check(probe_port_ok(probe, ctr, http_port),
                f"{k8s}/deployment.yaml: {kind} port is not the HTTP port {http_port}")
        probes[kind] = probe
    budget = lambda p: p.get("failureThreshold", 3) * p.get("periodSeconds", 10)
    if "startupProbe" in probes:
        c.check(budget(probes["startupProbe"]) >= STARTUP_BUDGET_S,
                f"{k8s}/deployment.yaml: startupProbe allows {budget(probes['startupProbe'])} s "
                f"to load the model; large models need {STARTUP_BUDGET_S} s")

    # Shutdown timing.
    prestop = prestop_seconds(ctr)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    c.check(prestop > 0, f"{k8s}/deployment.yaml: no preStop sleep (endpoints need time to drop "
            "the pod before the daemon stops accepting)")
    c.check(grace > shutdown + prestop,
            f"{k8s}/deployment.yaml: terminationGracePeriodSeconds {grace} <= shutdown timeout "
            f"{shutdown:g} + preStop {prestop:g}: the kubelet would kill the drain")
    if "livenessProbe" in probes:
        live = budget(probes["livenessProbe"])
        c.check(live > shutdown + prestop,
                f"{k8s}/deployment.yaml: livenessProbe fails after {live} s of 503, shorter "
                f"than preStop + drain ({prestop + shutdown:g} s)")

    # GPU, /dev/shm, user, API key.
    limits = ctr.get("resources", {}).get("limits", {})
    c.check(int(limits.get("nvidia.com/gpu", 0)) >= 1,
            f"{k8s}/deployment.yaml: no nvidia.com/gpu limit")
    shm = next((m for m in mounts if m.get("mountPath") == "/dev/shm"), None)
    c.check(shm and volumes.get(shm["name"], {}).get("emptyDir", {}).get("medium") == "Memory",
            f"{k8s}/deployment.yaml: /dev/shm must be an emptyDir with medium: Memory")
    uid = spec.get("securityContext", {}).get("runAsUser")
    c.check(str(uid) == image["uid"],
            f"{k8s}/deployment.yaml: runAsUser {uid}, the image's USER is {image['uid']}")
    env = {e.get("name"): e for e in ctr.get("env", [])}
    ref = env.get("MOESERVE_API_KEY", {}).get("valueFrom", {}).get("secretKeyRef", {})
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    c.check(ref.get("name") == secret.get("metadata", {}).get("name") and
            ref.get("key") in secret_keys,
            f"{k8s}/deployment.yaml: MOESERVE_API_KEY must come from the Secret of "
            "secret.example.yaml (name and key)")

    # Service, PDB, ServiceMonitor.
    c.check(selects(svc.get("spec", {}).get("selector"), pod_labels),
            f"{k8s}/service.yaml: selector does not match the pod labels")
    svc_ports = {p.get("name"): p for p in svc.get("spec", {}).get("ports", [])}
    for name, want in (("http", http_port), ("grpc", grpc_port)):
        p = svc_ports.get(name, {})
        target = p.get("targetPort")
        resolved = ports.get(target) if isinstance(target, str) else target
        c.check(resolved == want,
                f"{k8s}/service.yaml: port {name} targets {target}, not the daemon's port {want}")
    c.check(svc_ports.get("grpc", {}).get("appProtocol") == "grpc",
            f"{k8s}/service.yaml: the grpc port needs appProtocol: grpc")
    c.check(selects(pdb.get("spec", {}).get("selector", {}).get("matchLabels"), pod_labels),
            f"{k8s}/pdb.yaml: selector does not match the pod labels")
    c.check(selects(mon.get("spec", {}).get("selector", {}).get("matchLabels"),
                    svc.get("metadata", {}).get("labels", {})),
            f"{k8s}/servicemonitor.yaml: selector does not match the Service's labels")
    endpoints = mon.get("spec", {}).get("endpoints", [])
    for ep in endpoints:
        c.check(ep.get("port") == "http",
                f"{k8s}/servicemonitor.yaml: endpoint port {ep.get('port')}, expected the "
                "Service's http port")
    return {
        "arg_flags": arg_flags,
        "config_text": config_text,
        "shutdown": shutdown,
        "probe_paths": sorted({p["httpGet"]["path"] for p in probes.values()}),
        "metrics_paths": sorted({ep.get("path", "/metrics") for ep in endpoints}),
        "monitor_text": yaml.safe_dump(mon),
    }


def check_kustomize_render(c, k8s_dir):
    """`kubectl kustomize` renders the directory (only where kubectl is installed)."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        print("note: kubectl not found; kustomization.yaml not rendered")
        return
    r = subprocess.run([kubectl, "kustomize", k8s_dir], capture_output=True, text=True,
                       timeout=60)
    c.check(r.returncode == 0, f"kubectl kustomize deploy/k8s failed: {r.stderr.strip()}")


# ---- Grafana ----------------------------------------------------------------------------------


def strip_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def promql_names(expr):
    """Metric names in a PromQL expression: names before `{` and names with a colon."""
    e = strip_strings(expr)
    names = set(re.findall(r"(?<![\w:$])([a-zA-Z_][\w]*(?::[\w]+)+)", e))
    names.update(n for n in re.findall(r"(?<![\w:$])([a-zA-Z_][\w:]*)\s*\{", e))
    return names


def promql_labels(expr):
    """Label names in selectors `{a="x", b=~"y"}` and in `by (...)` / `without (...)`."""
    e = strip_strings(expr)
    labels = set()
    for body in re.findall(r"\{([^}]*)\}", e):
        labels.update(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", body))
    for body in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", e):
        labels.update(l.strip() for l in body.split(",") if l.strip())
    return labels


def dashboard_exprs(dash):
    exprs = []
    for panel in dash.get("panels", []):
        for t in panel.get("targets", []):
            exprs.append((panel.get("title"), t.get("expr", "")))
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        if var.get("type") == "query":
            exprs.append((f"variable ${var.get('name')}",
                          q.get("query", "") if isinstance(q, dict) else q))
    return exprs


def check_dashboard_structure(c, dash, name):
    ids = [p.get("id") for p in dash.get("panels", [])]
    c.check(len(ids) == len(set(ids)), f"{name}: duplicate panel ids")
    defined = {v.get("name") for v in dash.get("templating", {}).get("list", [])}
    text = json.dumps(dash)
    for var in set(re.findall(r"\$\{?(\w+)", text)):
        c.check(var in defined or var in GRAFANA_BUILTINS,
                f"{name}: uses ${var}, which is not a dashboard variable")
    for panel in dash.get("panels", []):
        if panel.get("type") == "row":
            continue
        c.check(panel.get("targets") and all(t.get("expr") for t in panel["targets"]),
                f"{name}: panel '{panel.get('title')}' has no PromQL targets")
        c.check("gridPos" in panel, f"{name}: panel '{panel.get('title')}' has no gridPos")


def parse_metrics(text):
    """Prometheus text format -> {sample name: set of label names}."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s", line)
        if m:
            labels = set(re.findall(r'([a-zA-Z_]\w*)="', m.group(3) or ""))
            samples.setdefault(m.group(1), set()).update(labels)
    return samples


def check_metrics(c, where, exprs, samples):
    for title, expr in exprs:
        names = promql_names(expr)
        for n in sorted(names):
            c.check(n in samples, f"{where}: '{title}' uses metric {n}, which the daemon's "
                    "/metrics does not export")
        known = set(TARGET_LABELS) | {"le"}
        for n in names:
            known |= samples.get(n, set())
        for label in sorted(promql_labels(expr)):
            c.check(label in known, f"{where}: '{title}' uses label {label}, which none of "
                    f"{sorted(names)} carries")


# ---- the live daemon --------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, headers=None, timeout=5.0):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode(errors="replace")


def run_daemon_checks(c, moeserve, source_dir, image, k8s, dashboard_exprs_, monitor_exprs):
    """Starts the daemon as the Deployment would (its args and config), on the tiny model, the
    CPU backend and free local ports, then checks routes, auth, metrics and the SIGTERM exit."""
    api_key = "check-deploy-test-key"
    with tempfile.TemporaryDirectory(prefix="check_deploy_") as tmp:
        # The image's ENTRYPOINT flags, then the Deployment's args, with --config pointing at a
        # copy of the ConfigMap's file.
        config = os.path.join(tmp, "config.json")
        if k8s["config_text"] is not None:
            with open(config, "w") as f:
                f.write(k8s["config_text"])
        argv = [moeserve, "serve"]
        for flag, value in image["entry_flags"] + k8s["arg_flags"]:
            if flag == "--config":
                value = config
            argv += [flag] if value is None else [f"{flag}={value}"]
        # Later flags win: these replace what needs a GPU, the real model or fixed ports.
        port, grpc_port = free_port(), free_port()
        argv += [
            "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port),
            "--model", os.path.join(source_dir, TINY_MODEL),
            "--backend", "cpu", "--threads", "2", "--kv-cache-memory-mb", "16",
            "--max-model-len", "0", "--log-level", "warn"]
        env = dict(os.environ, MOESERVE_API_KEY=api_key)
        log = open(os.path.join(tmp, "daemon.log"), "w+")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            ready = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if http_get(base + "/health", timeout=2)[0] == 200:
                        ready = True
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            if not c.check(ready, "the daemon did not become healthy within 60 s with the "
                           f"Deployment's arguments: {shlex.join(argv)}\n{read_log(log)}"):
                return

            for path in k8s["probe_paths"]:
                status = http_get(base + path)[0]
                c.check(status == 200, f"probe path {path}: HTTP {status} without an API key")
            samples = {}
            for path in k8s["metrics_paths"]:
                status, ctype, body = http_get(base + path)
                c.check(status == 200 and ctype.startswith("text/plain"),
                        f"ServiceMonitor path {path}: HTTP {status} {ctype}")
                samples.update(parse_metrics(body))
            c.check(samples, "no metrics scraped")
            c.check(http_get(base + "/v1/models")[0] == 401,
                    "/v1/models answered without the API key set through $MOESERVE_API_KEY")
            c.check(http_get(base + "/v1/models", {"Authorization": "Bearer " + api_key})[0]
                    == 200, "/v1/models refused the API key of $MOESERVE_API_KEY")
            with socket.socket() as s:
                s.settimeout(5)
                c.check(s.connect_ex(("127.0.0.1", grpc_port)) == 0,
                        f"nothing listens on the gRPC port {grpc_port}")
            check_metrics(c, "deploy/grafana/moeserve-dashboard.json", dashboard_exprs_, samples)
            check_metrics(c, "deploy/k8s/servicemonitor.yaml", monitor_exprs, samples)

            # SIGTERM: drain (nothing running) and exit 0 within the shutdown timeout.
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=k8s["shutdown"] + 10)
                c.check(rc == 0, f"after SIGTERM the daemon exited {rc}, not 0\n{read_log(log)}")
                c.check(time.monotonic() - start <= k8s["shutdown"] + 5,
                        "the idle daemon took longer than its shutdown timeout to stop")
            except subprocess.TimeoutExpired:
                c.check(False, f"the daemon did not exit within {k8s['shutdown'] + 10:g} s of "
                        "SIGTERM")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            log.close()


def read_log(log):
    log.flush()
    log.seek(0)
    return log.read()[-4000:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moeserve", required=True, help="the moeserve binary")
    ap.add_argument("--source-dir", required=True, help="the repository root")
    a = ap.parse_args()
    source_dir = os.path.abspath(a.source_dir)
    moeserve = os.path.abspath(a.moeserve)
    c = Checker()

    flags, defaults = serve_help(moeserve)
    for name in ("port", "grpc-port", "shutdown-timeout-s", "host"):
        c.check(name in defaults, f"`moeserve serve --help` shows no default for --{name}")

    images = {}
    for variant, cuda in (("cpu", False), ("cuda", True)):
        path = os.path.join(source_dir, "docker", f"Dockerfile.{variant}")
        if c.check(os.path.exists(path), f"docker/Dockerfile.{variant} is missing"):
            images[variant] = check_dockerfile(c, path, source_dir, flags, defaults, cuda)

    k8s_dir = os.path.join(source_dir, "deploy", "k8s")
    docs = load_manifests(c, k8s_dir)
    k8s = None
    if "cuda" in images:
        k8s = check_k8s(c, source_dir, docs, flags, defaults, images["cuda"])
        check_kustomize_render(c, k8s_dir)

    dash_path = os.path.join(source_dir, "deploy", "grafana", "moeserve-dashboard.json")
    dash = None
    try:
        with open(dash_path) as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        c.check(False, f"deploy/grafana/moeserve-dashboard.json: {e}")
    if dash is not None:
        check_dashboard_structure(c, dash, "deploy/grafana/moeserve-dashboard.json")
        c.check(len(dashboard_exprs(dash)) > 0, "the dashboard has no queries")

    if k8s is not None and dash is not None:
        monitor_exprs = [("ServiceMonitor", n) for n in
                         re.findall(r"(?:vllm|moeserve):\w+", k8s["monitor_text"])]
        run_daemon_checks(c, moeserve, source_dir, images["cuda"], k8s, dashboard_exprs(dash),
                          monitor_exprs)

    if c.failures:
        print(f"check_deploy.py: {len(c.failures)} of {c.n_checks} checks FAILED:")
        for f in c.failures:
            print("  - " + f)
        return 1
    print(f"check_deploy.py: all {c.n_checks} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
